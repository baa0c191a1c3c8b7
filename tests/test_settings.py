"""params.yaml sections as validated dataclasses: every bad value is a ParamError led by its dotted key, and
an unknown key anywhere in the file is an error naming the closest valid one."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from lstm_ptq.errors import ParamError
from lstm_ptq.settings import (
    SCHEMA,
    CalibrationSettings,
    DownloadSettings,
    FinalLayerSettings,
    GridSettings,
    QuantizationSettings,
    ReadRecorder,
    RemoteSource,
    TokenizeSettings,
    TrainSettings,
    TreeSettings,
    load_params,
    minimal_reads,
    validate_params,
)

REPO = Path(__file__).resolve().parents[1]
SHA = "9a8c300eabb45750237fcc669f61cb8a3448f3ef6f6098e1ce340e444f6872be"

PARAMS = {
    "seed": 2025,
    "datasets": ["ag_news", "dbpedia"],
    "download": {
        "ag_news": {
            "source": "remote",
            "remote": {"url": "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz", "sha256": SHA, "timeout_s": 60},
        },
        "dbpedia": {
            "source": "bundled",
            "bundled_test_fraction": 0.2,
            "remote": {"url": "not checked while the source is bundled", "sha256": "", "timeout_s": 0},
        },
    },
    "tokenize": {"lowercase": True, "max_vocab_size": 20000, "min_freq": 2, "max_length": 64, "valid_fraction": 0.2},
}


DELETE = object()


def edited(dotted_key: str, value: object) -> dict:
    """A copy of PARAMS with one value replaced, or removed when ``value`` is ``DELETE``."""
    params = copy.deepcopy(PARAMS)
    *parents, last = dotted_key.split(".")
    node = params
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return params


def test_valid_sections_give_exact_dataclasses():
    assert DownloadSettings.from_params(PARAMS, "ag_news") == DownloadSettings(
        "ag_news", "remote", RemoteSource("https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz", SHA, 60.0), None, 2025
    )
    assert DownloadSettings.from_params(PARAMS, "dbpedia") == DownloadSettings("dbpedia", "bundled", None, 0.2, 2025)
    assert TokenizeSettings.from_params(PARAMS) == TokenizeSettings(True, 20000, 2, 64, 0.2, 2025)


def test_int_is_accepted_where_a_float_is_expected():
    params = edited("download.ag_news.remote.timeout_s", 5)
    remote = DownloadSettings.from_params(params, "ag_news").remote
    assert remote is not None and remote.timeout_s == 5.0 and isinstance(remote.timeout_s, float)


def test_sha256_is_lowercased():
    params = edited("download.ag_news.remote.sha256", SHA.upper())
    assert DownloadSettings.from_params(params, "ag_news").remote.sha256 == SHA


def test_repository_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    for dataset in GridSettings.from_params(params).datasets:
        download = DownloadSettings.from_params(params, dataset)
        assert download.dataset == dataset and download.seed == params["seed"]
    assert TokenizeSettings.from_params(params).max_length == params["tokenize"]["max_length"]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("download.ag_news.source", "s3", "download.ag_news.source: unknown source 's3'; expected one of ['bundled', 'remote']"),
        ("download.ag_news.source", 1, "download.ag_news.source: 1 is not a str"),
        ("download.ag_news.remote.sha256", "9a8c300e", "download.ag_news.remote.sha256: '9a8c300e' is not 64 hexadecimal digits"),
        ("download.ag_news.remote.sha256", SHA[:-1] + "g", "download.ag_news.remote.sha256: "),
        ("download.ag_news.remote.sha256", SHA + "\n", "download.ag_news.remote.sha256: "),
        (
            "download.ag_news.remote.url",
            "s3.amazonaws.com/ag_news_csv.tgz",
            "download.ag_news.remote.url: 's3.amazonaws.com/ag_news_csv.tgz' is not an http(s):// or file:// URL",
        ),
        ("download.ag_news.remote.url", "ftp://example.org/a.tgz", "download.ag_news.remote.url: "),
        ("download.ag_news.remote.timeout_s", 0, "download.ag_news.remote.timeout_s: 0.0 must be a finite number > 0"),
        ("download.ag_news.remote.timeout_s", -1.5, "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", float("nan"), "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", float("inf"), "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", "60", "download.ag_news.remote.timeout_s: '60' is not a float"),
        ("download.ag_news.remote.timeout_s", True, "download.ag_news.remote.timeout_s: True is not a float"),
        ("download.ag_news.remote.url", DELETE, "download.ag_news.remote.url: missing from params.yaml"),
        ("download.ag_news.remote", DELETE, "download.ag_news.remote: missing from params.yaml"),
        ("download.ag_news.source", DELETE, "download.ag_news.source: missing from params.yaml"),
        ("download.ag_news", DELETE, "download.ag_news: missing from params.yaml"),
        ("download", DELETE, "download: missing from params.yaml"),
        ("seed", DELETE, "seed: missing from params.yaml"),
        ("seed", "2025", "seed: '2025' is not a int"),
        ("seed", 2025.0, "seed: 2025.0 is not a int"),
        ("seed", -1, "seed: -1 must be >= 0"),
    ],
)
def test_bad_download_values_name_the_dotted_key(key, value, expected):
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        DownloadSettings.from_params(edited(key, value), "ag_news")


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 1.5, -0.2, True, "0.2", None])
def test_bad_bundled_test_fraction(value):
    with pytest.raises(ParamError, match=r"^download\.dbpedia\.bundled_test_fraction: "):
        DownloadSettings.from_params(edited("download.dbpedia.bundled_test_fraction", value), "dbpedia")


def test_unknown_dataset():
    with pytest.raises(ParamError, match=r"^dataset: unknown dataset 'imdb'; expected one of \['ag_news', 'dbpedia'\]$"):
        DownloadSettings.from_params(PARAMS, "imdb")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("tokenize.max_length", "64", "tokenize.max_length: '64' is not a int"),
        ("tokenize.max_length", True, "tokenize.max_length: True is not a int"),
        ("tokenize.max_length", 64.0, "tokenize.max_length: 64.0 is not a int"),
        ("tokenize.max_length", 1, "tokenize.max_length: 1 must be >= 2"),
        ("tokenize.max_length", DELETE, "tokenize.max_length: missing from params.yaml"),
        ("tokenize.max_vocab_size", 4, "tokenize.max_vocab_size: 4 must be > 4 (the special tokens)"),
        ("tokenize.max_vocab_size", None, "tokenize.max_vocab_size: None is not a int"),
        ("tokenize.min_freq", 0, "tokenize.min_freq: 0 must be >= 1"),
        ("tokenize.lowercase", "yes", "tokenize.lowercase: 'yes' is not a bool"),
        ("tokenize.lowercase", 1, "tokenize.lowercase: 1 is not a bool"),
        ("tokenize.valid_fraction", 0, "tokenize.valid_fraction: 0.0 is not in (0, 1)"),
        ("tokenize.valid_fraction", 1, "tokenize.valid_fraction: 1.0 is not in (0, 1)"),
        ("tokenize.valid_fraction", float("nan"), "tokenize.valid_fraction: nan is not in (0, 1)"),
        ("tokenize.valid_fraction", "20%", "tokenize.valid_fraction: '20%' is not a float"),
        ("tokenize", DELETE, "tokenize: missing from params.yaml"),
        ("seed", True, "seed: True is not a int"),
        ("seed", -5, "seed: -5 must be >= 0"),
    ],
)
def test_bad_tokenize_values_name_the_dotted_key(key, value, expected):
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        TokenizeSettings.from_params(edited(key, value))


def test_load_params_errors_name_the_file(tmp_path):
    missing = tmp_path / "params.yaml"
    with pytest.raises(ParamError, match=f"^{re.escape(str(missing))}: parameter file not found$"):
        load_params(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tokenize: [unclosed\n")
    with pytest.raises(ParamError, match=f"^{re.escape(str(broken))}: not valid YAML"):
        load_params(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- seed\n")
    with pytest.raises(ParamError, match=f"^{re.escape(str(listed))}: expected a mapping"):
        load_params(listed)


# --------------------------------------------------------------------------------------------------
# The whole file against the schema
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda p: p.update(calibraton={"fraction": 0.25}), "calibraton: unknown key; did you mean 'calibration'?"),
        (lambda p: p["final_layer"].update(algoritm="gptq"), "final_layer.algoritm: unknown key; did you mean 'algorithm'?"),
        (
            lambda p: p["calibration"].update(final_layer_algorithm="gptq"),
            "calibration.final_layer_algorithm: unknown key; expected one of ['fraction', 'batch_size', 'decoder_feeding']",
        ),
        (lambda p: p["train"].update(generativ={"max_epochs": 3}), "train.generativ: unknown key; did you mean 'generative'?"),
        (lambda p: p["train"]["generative"].update(max_epoch=3), "train.generative.max_epoch: unknown key; did you mean 'max_epochs'?"),
        (lambda p: p["download"]["ag_news"]["remote"].update(sha=SHA), "download.ag_news.remote.sha: unknown key; did you mean 'sha256'?"),
        (lambda p: p["download"].update(imdb={"source": "bundled"}), "download.imdb: unknown key; expected one of ['ag_news', 'dbpedia']"),
        (lambda p: p["quantization"].update(cell_state_bits=8), "quantization.cell_state_bits: unknown key; did you mean 'cell_state_bit_width'?"),
        (lambda p: p["noise"].update(seed=7), "noise.seed: unknown key; expected one of ['levels']"),
        (lambda p: p.update(zzz=1), "zzz: unknown key; expected one of ["),
        (lambda p: p.update(tokenize=[1, 2]), "tokenize: [1, 2] is not a mapping of keys"),
    ],
)
def test_an_unknown_key_anywhere_names_the_closest_valid_one(tmp_path, edit, expected):
    params = load_params(REPO / "params.yaml")
    edit(params)
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        validate_params(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamError, match=f"^{re.escape(str(path))}: {re.escape(expected)}"):
        load_params(path)


def test_every_section_of_the_repository_params_is_in_the_schema_and_back():
    params = load_params(REPO / "params.yaml")
    assert set(params) == set(SCHEMA)


# --------------------------------------------------------------------------------------------------
# Recorded reads (what dvc.yaml declares per stage)
# --------------------------------------------------------------------------------------------------


def test_recorder_records_values_read_and_whole_sections_iterated():
    params = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    recorder = ReadRecorder(params)
    assert recorder["a"]["b"] == 1 and recorder["e"] == 3
    assert minimal_reads(recorder.reads) == ["a.b", "e"]
    assert "x" not in recorder["a"]["c"]  # a missing key: the answer depends on the whole section
    assert sorted(recorder["a"]) == ["b", "c"]
    assert minimal_reads(recorder.reads) == ["a", "e"]
    with pytest.raises(TypeError):
        recorder["e"] = 4  # read-only


def test_train_settings_read_every_shared_key_and_the_model_override_section():
    params = load_params(REPO / "params.yaml")
    recorder = ReadRecorder(params)
    settings = TrainSettings.from_params(recorder, "generative")
    assert settings.max_epochs == params["train"]["generative"]["max_epochs"]
    reads = minimal_reads(recorder.reads)
    assert "train.generative" in reads and "train.max_epochs" in reads and "train.discriminative" not in reads


def test_train_override_errors_name_the_override_path():
    params = load_params(REPO / "params.yaml")
    params["train"]["generative"]["max_epochs"] = 0
    with pytest.raises(ParamError, match=r"^train\.generative\.max_epochs: 0 must be >= 1$"):
        TrainSettings.from_params(params, "generative")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("grid.bit_widths", [8, 1], "grid.bit_widths[1]: 1 is outside 2..16"),
        ("grid.bit_widths", [], "grid.bit_widths: empty; expected at least one entry"),
        ("grid.bit_widths", [4, 4], "grid.bit_widths: [4, 4] repeats an entry"),
        ("grid.calibration_schemes", ["class_conditional", "balanced"], "grid.calibration_schemes[1]: "),
        ("grid.noise_quantized_schemes", ["classes_all"], "grid.noise_quantized_schemes[0]: 'classes_all' is not in grid.calibration_schemes"),
        ("grid.model_types", ["generative", "naive_bayes"], "grid.model_types[1]: unknown model 'naive_bayes'"),
        ("grid.noise_trained_datasets", ["imdb"], "grid.noise_trained_datasets[0]: unknown dataset 'imdb'"),
    ],
)
def test_bad_grid_values_name_the_dotted_key(key, value, expected):
    params = load_params(REPO / "params.yaml")
    params["grid"][key.split(".")[1]] = value
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        GridSettings.from_params(params)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("quantization", "cell_state_bit_width", 1, "quantization.cell_state_bit_width: 1 is outside 2..16"),
        ("quantization", "weight_scaling", "mse", "quantization.weight_scaling: unknown scaling 'mse'"),
        ("quantization", "act_high_percentile", 30, "quantization.act_high_percentile: 30.0 is not a high percentile in (50, 100]"),
        ("final_layer", "algorithm", "adaround", "final_layer.algorithm: unknown algorithm 'adaround'"),
        ("final_layer", "documents", 0, "final_layer.documents: 0 must be >= 1, or null for the whole calibration set"),
        ("final_layer", "error_batches", -1, "final_layer.error_batches: -1 must be >= 0"),
        ("calibration", "fraction", 1.5, "calibration.fraction: 1.5 is not in (0, 1]"),
        ("calibration", "batch_size", 0, "calibration.batch_size: 0 must be >= 1"),
    ],
)
def test_bad_quantization_and_calibration_values_name_the_dotted_key(section, key, value, expected):
    params = load_params(REPO / "params.yaml")
    params[section][key] = value
    parse = {"quantization": QuantizationSettings, "calibration": CalibrationSettings, "final_layer": FinalLayerSettings}[section].from_params
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        parse(params)


def test_quantization_settings_give_the_cell_spec():
    params = load_params(REPO / "params.yaml")
    params["quantization"]["cell_state_bit_width"] = 8
    spec = QuantizationSettings.from_params(params).spec(3)
    assert spec.bit_width == 3 and spec.cell_state_bits == 8


def test_model_type_names_match_the_model_registry():
    """settings keeps the names without importing torch (every stage validates params.yaml); they must
    stay the registry's, or a new model type would be refused by params validation."""
    from lstm_ptq.models import MODEL_TYPES
    from lstm_ptq.settings import MODEL_TYPE_NAMES

    assert tuple(MODEL_TYPES) == MODEL_TYPE_NAMES


# --------------------------------------------------------------------------------------------------
# Project trees: the same stages with some settings changed
# --------------------------------------------------------------------------------------------------


def with_trees(**trees: dict) -> dict:
    params = load_params(REPO / "params.yaml")
    params["trees"] = trees
    return params


def test_a_tree_sees_its_params_laid_over_the_file_and_records_where_each_value_came_from():
    params = with_trees(seed_b={"rerun_from": "train", "params": {"seed": 7, "train": {"generative": {"max_epochs": 9}}, "grid": {"bit_widths": [4, 3]}}})
    validate_params(params)
    recorder = ReadRecorder(params)
    view = TreeSettings.from_params(recorder, "seed_b").view(recorder)
    train = TrainSettings.from_params(view, "generative")
    assert (train.seed, train.max_epochs, train.patience) == (7, 9, params["train"]["generative"]["patience"])
    assert GridSettings.from_params(view).bit_widths == (4, 3)
    assert GridSettings.from_params(view).datasets == GridSettings.from_params(params).datasets
    reads = minimal_reads(recorder.reads)
    assert "trees.seed_b.rerun_from" in reads and "trees.seed_b.params.seed" in reads
    assert "seed" not in reads  # the tree's own seed replaced it: editing the top-level seed does not rerun the tree
    # a key the tree does not override is read from the file; whether the tree overrides it depends on the
    # whole override section, which is recorded (adding a key to it reruns the tree's stage)
    assert "train.learning_rate" in reads and "trees.seed_b.params.train" in reads
    assert "grid.datasets" in reads and "trees.seed_b.params.grid" in reads and "grid.bit_widths" not in reads


def test_tree_paths_write_under_variants_and_read_the_main_trees_inputs(tmp_path):
    params = with_trees(seed_b={"rerun_from": "train"}, wide={"rerun_from": "calibration_sets", "params": {"quantization": {"cell_state_bit_width": 16}}})
    seed_paths = TreeSettings.from_params(params, "seed_b").paths(tmp_path)
    wide_paths = TreeSettings.from_params(params, "wide").paths(tmp_path)
    for paths in (seed_paths, wide_paths):
        assert paths.tokenized("ag_news") == tmp_path / "data" / "tokenized" / "ag_news"
        assert paths.calibrated("ag_news", "generative", 3, "class_conditional").is_relative_to(tmp_path / "variants" / paths.root.name)
    assert seed_paths.float_model_dir("ag_news", "generative") == tmp_path / "variants" / "seed_b" / "models" / "float" / "ag_news" / "generative"
    assert wide_paths.float_model_dir("ag_news", "generative") == tmp_path / "models" / "float" / "ag_news" / "generative"
    assert QuantizationSettings.from_params(TreeSettings.from_params(params, "wide").view(params)).cell_state_bit_width == 16
    assert QuantizationSettings.from_params(params).cell_state_bit_width is None  # the main tree: `same`


@pytest.mark.parametrize(
    "trees, expected",
    [
        ({"Seed": {"rerun_from": "train"}}, "trees.Seed: 'Seed' is not a tree name"),
        ({"seed_b": {"rerun_from": "train", "params": {"sed": 7}}}, "trees.seed_b.params.sed: unknown key; did you mean 'seed'?"),
        ({"seed_b": {"rerun_from": "train", "params": {"trees": {}}}}, "trees.seed_b.params.trees: unknown key"),
        ({"seed_b": {"rerun_form": "train"}}, "trees.seed_b.rerun_form: unknown key; did you mean 'rerun_from'?"),
    ],
)
def test_a_misspelt_tree_key_is_an_error_naming_it(trees, expected):
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        validate_params(with_trees(**trees))


@pytest.mark.parametrize(
    "name, tree, expected",
    [
        ("seed_b", {"rerun_from": "quantize"}, "trees.seed_b.rerun_from: 'quantize' is not one of ['train', 'calibration_sets']"),
        ("seed_b", {"params": {"seed": 7}}, "trees.seed_b.rerun_from: missing from params.yaml"),
        ("noise_trained", {"rerun_from": "train"}, "trees.noise_trained: 'noise_trained' is not a usable tree name"),
        ("seed_b", {"rerun_from": "train", "params": [1]}, "trees.seed_b.params: [1] is not a mapping of settings"),
    ],
)
def test_bad_tree_settings_name_the_dotted_key(name, tree, expected):
    params = with_trees(**{name: tree})
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        TreeSettings.from_params(params, name).view(params)


def test_a_missing_tree_names_its_key():
    with pytest.raises(ParamError, match=r"^trees\.seed_c: missing from params\.yaml$"):
        TreeSettings.from_params(with_trees(seed_b={"rerun_from": "train"}), "seed_c")
