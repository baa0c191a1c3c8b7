"""Every file the pipeline reads, written bad with real bytes: each gives the project's error naming the file and
what was expected (docs/failures.md lists the cases), and the good file still loads exactly as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_ptq.artifacts import read_frame, read_json, save_arrays, save_torch, write_json
from lstm_ptq.errors import DataError
from lstm_ptq.evaluation import load_test_scores
from lstm_ptq.models import MAX_PARAMETERS, ModelConfig, build_model, check_vocabulary_fits, load_float_model, save_state_dict
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import scheme_rows
from lstm_ptq.preprocess import EncodedSplit, load_split, load_vocabulary
from lstm_ptq.settings import TrainSettings
from lstm_ptq.text import SPECIAL_TOKENS
from lstm_ptq.training import train_model

REPO = Path(__file__).resolve().parents[1]

CONFIG = {"model_type": "discriminative", "vocab_size": 50, "num_classes": 4, "embedding_dim": 8, "hidden_size": 8, "num_layers": 1, "label_embedding_dim": 4}


def good_split() -> dict[str, np.ndarray]:
    """A split as build_tokenized writes it: int32 tokens right-padded with 0, lengths >= 1, int64 labels."""
    tokens = np.array([[5, 6, 0], [7, 0, 0], [8, 9, 10]], dtype=np.int32)
    return {
        "tokens": tokens,
        "lengths": np.array([2, 1, 3], dtype=np.int32),
        "labels": np.array([0, 3, 1], dtype=np.int64),
        "source_rows": np.array([4, 0, 2], dtype=np.int32),
    }


def named(path: Path, message: str) -> str:
    """A pytest match pattern: the message must start with the file's path."""
    return rf"^{re.escape(str(path))}: {message}"


# --------------------------------------------------------------------------------------------------
# Tokenized splits (.npz) and the vocabulary
# --------------------------------------------------------------------------------------------------


def test_a_good_split_loads_exactly_as_written(tmp_path: Path) -> None:
    save_arrays(tmp_path / "train.npz", **good_split())
    split = load_split(tmp_path, "train", num_classes=4)
    for name, array in good_split().items():
        loaded = getattr(split, name)
        assert loaded.dtype == array.dtype and np.array_equal(loaded, array)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("labels", np.array([0, -1, 1], dtype=np.int64), r"array 'labels' holds -1; expected values in \[0, 4\)$"),
        ("labels", np.array([0, 4, 1], dtype=np.int64), r"array 'labels' holds 4; expected values in \[0, 4\)$"),
        ("labels", np.array([0.0, 1.0, 1.0]), r"array 'labels' has dtype float64; expected signed integer or unsigned integer values$"),
        ("lengths", np.array([2, 0, 3], dtype=np.int32), r"array 'lengths' holds 0; expected values in \[1, 4\)$"),
        ("lengths", np.array([2, 1, 4], dtype=np.int32), r"array 'lengths' holds 4; expected values in \[1, 4\)$"),
        ("tokens", np.array([[5, -2, 0], [7, 0, 0], [8, 9, 10]], dtype=np.int32), r"array 'tokens' holds -2; expected values in \[0, inf\)$"),
        ("tokens", np.array([5, 7, 8], dtype=np.int32), r"array 'tokens' has shape \(3,\); expected 2 dimensions$"),
        (
            "source_rows",
            np.array([4, 0], dtype=np.int32),
            r"arrays disagree on the number of documents \(\{'tokens': 3, 'lengths': 3, 'labels': 3, 'source_rows': 2\}\)$",
        ),
    ],
)
def test_a_split_with_bad_values_is_a_data_error_naming_the_array(tmp_path: Path, name: str, value: np.ndarray, message: str) -> None:
    save_arrays(tmp_path / "test.npz", **(good_split() | {name: value}))
    with pytest.raises(DataError, match=named(tmp_path / "test.npz", message)):
        load_split(tmp_path, "test", num_classes=4)


def test_a_negative_label_is_refused_even_without_the_class_count(tmp_path: Path) -> None:
    # evaluate() would index scores[:, -1]: the document scored against the last class
    save_arrays(tmp_path / "test.npz", **(good_split() | {"labels": np.array([0, -1, 1])}))
    with pytest.raises(DataError, match=named(tmp_path / "test.npz", r"array 'labels' holds -1")):
        load_split(tmp_path, "test")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04\x14\x00", None])
def test_a_zero_byte_or_truncated_split_is_a_data_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "train.npz"
    save_arrays(path, **good_split())
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2] if content is None else content)
    with pytest.raises(DataError, match=named(path, r"not a loadable \.npz archive \(")):
        load_split(tmp_path, "train", num_classes=4)


def test_a_pickled_npz_is_refused_as_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    np.savez(path, tokens=np.array([{"a": 1}], dtype=object))  # allow_pickle defaults to True when writing
    with pytest.raises(DataError, match=named(path, r"not a loadable \.npz archive \(ValueError: Object arrays cannot be loaded")):
        load_split(tmp_path, "train")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"not valid JSON \(line 1 column 1: Expecting value\)$"),
        (b'["<pad>", "<unk>"', r"not valid JSON \(line 1 column 18: Expecting ',' delimiter\)$"),
        (b'["\xff"]', r"not UTF-8 text \(invalid byte at offset 2\); expected JSON$"),
        (b'{"words": []}', r"expected a JSON array, found a JSON object$"),
        (json.dumps([*SPECIAL_TOKENS, 7]).encode(), r"expected a JSON array of words \(strings\)$"),
        (json.dumps([*SPECIAL_TOKENS, "a", "a"]).encode(), r"vocabulary has duplicate tokens$"),
    ],
)
def test_a_bad_vocabulary_file_is_a_data_error_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "vocab.json").write_bytes(content)
    with pytest.raises(DataError, match=named(tmp_path / "vocab.json", message)):
        load_vocabulary(tmp_path)


# --------------------------------------------------------------------------------------------------
# Model config.json and state dicts
# --------------------------------------------------------------------------------------------------


def model_dir(root: Path, config: dict | bytes) -> Path:
    """A float model folder of the project tree at ``root`` with a real state dict and ``config`` as config.json."""
    folder = ProjectPaths(root).float_model_dir("ag_news", "discriminative")
    folder.mkdir(parents=True)
    save_state_dict(folder / "model.pt", build_model(ModelConfig(**CONFIG)).state_dict())
    if isinstance(config, bytes):
        (folder / "config.json").write_bytes(config)
    else:
        write_json(folder / "config.json", config)
    return folder


def test_a_good_config_and_state_dict_load(tmp_path: Path) -> None:
    folder = model_dir(tmp_path, CONFIG)
    config, model = load_float_model(ProjectPaths(tmp_path), "ag_news", "discriminative")
    assert config == ModelConfig(**CONFIG)
    saved = torch.load(folder / "model.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


@pytest.mark.parametrize(
    "config, message",
    [
        (b'{"model_type": "discriminative",', r"not valid JSON \(line 1 column 33: Expecting property name enclosed in double quotes\)$"),
        (b"[1, 2]", r"expected a JSON object, found a JSON array$"),
        (CONFIG | {"vocab_size": "50"}, r"model\.vocab_size: '50' is not an integer$"),
        (CONFIG | {"hidden_size": 8.0}, r"model\.hidden_size: 8\.0 is not an integer$"),
        (CONFIG | {"num_layers": True}, r"model\.num_layers: True is not an integer$"),
        (CONFIG | {"num_classes": 0}, r"model\.num_classes: 0 must be >= 1$"),
        ({k: v for k, v in CONFIG.items() if k != "vocab_size"}, r"missing keys \['vocab_size'\]$"),
        (CONFIG | {"vocab_size": 10**11}, rf"model: 800,000,000,[0-9,]+ weights, more than the {MAX_PARAMETERS:,} this pipeline allocates"),
        (CONFIG | {"num_layers": 10**7}, r"model: [0-9,]+ weights, more than the"),
    ],
)
def test_a_bad_config_json_is_a_data_error_naming_it(tmp_path: Path, config: dict | bytes, message: str) -> None:
    folder = model_dir(tmp_path, config)
    with pytest.raises(DataError, match=named(folder / "config.json", message)):
        load_float_model(ProjectPaths(tmp_path), "ag_news", "discriminative")


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_the_parameter_count_is_what_torch_allocates(model_type: str) -> None:
    # the size bound is checked on this count, before allocating: it must be the model's true size
    config = ModelConfig(**(CONFIG | {"model_type": model_type, "num_layers": 3, "embedding_dim": 6}))
    assert config.parameter_count() == sum(p.numel() for p in build_model(config).parameters())


@pytest.mark.parametrize("content", [b"", None])
def test_a_zero_byte_or_truncated_model_file_is_a_data_error(tmp_path: Path, content: bytes | None) -> None:
    folder = model_dir(tmp_path, CONFIG)
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2] if content is None else content)
    with pytest.raises(DataError, match=named(folder / "model.pt", r"not a loadable state dict \(\w+")):
        load_float_model(ProjectPaths(tmp_path), "ag_news", "discriminative")


# --------------------------------------------------------------------------------------------------
# Test scores, calibration rows, CSV tables
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"predictions": np.array([0, 4, 1], dtype=np.int32)}, r"array 'predictions' holds 4; expected values in \[0, 4\)$"),
        ({"predictions": np.array([0, -1, 1], dtype=np.int32)}, r"array 'predictions' holds -1; expected values in \[0, 4\)$"),
        ({"scores": np.full((3, 4), np.nan, dtype=np.float32)}, r"array 'scores' holds a NaN or infinite value$"),
        ({"scores": np.zeros((3, 4), dtype=np.int32)}, r"array 'scores' has dtype int32; expected floating point values$"),
    ],
)
def test_bad_test_scores_are_a_data_error(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "scores.npz"
    good = {"scores": np.zeros((3, 4), dtype=np.float32), "predictions": np.array([0, 3, 1], dtype=np.int32)}
    save_arrays(path, **good)
    assert np.array_equal(load_test_scores(path, 3, 4)["predictions"], good["predictions"])
    save_arrays(path, **(good | arrays))
    with pytest.raises(DataError, match=named(path, message)):
        load_test_scores(path, 3, 4)


@pytest.mark.parametrize(
    "rows, message",
    [
        (np.array([0, 5, 10]), r"array 'class_conditional' holds 10; expected values in \[0, 10\)$"),
        (np.array([0, -5]), r"array 'class_conditional' holds -5; expected values in \[0, 10\)$"),
        (np.array([1, 1, 2]), r"scheme 'class_conditional' lists a training row twice; rerun calibration_sets$"),
    ],
)
def test_calibration_rows_outside_the_training_split_are_a_data_error(tmp_path: Path, rows: np.ndarray, message: str) -> None:
    paths = ProjectPaths(tmp_path)
    save_arrays(paths.calibration_rows("ag_news", "discriminative"), class_conditional=np.array([0, 5, 9]))
    assert scheme_rows(paths, "ag_news", "discriminative", "class_conditional", 10).tolist() == [0, 5, 9]
    save_arrays(paths.calibration_rows("ag_news", "discriminative"), class_conditional=rows)
    with pytest.raises(DataError, match=named(paths.calibration_rows("ag_news", "discriminative"), message)):
        scheme_rows(paths, "ag_news", "discriminative", "class_conditional", 10)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"file is empty; expected a CSV table with a header row$"),
        (b'a,b\n1,2\n3,"4\n', r"not a readable CSV table \(ParserError: "),
        (b"a,b\n1,\xff\n", r"not a readable CSV table \(UnicodeDecodeError: "),
        (b"a,c\n1,2\n", r"no column \['b'\]; expected columns \['a', 'b'\]$"),
    ],
)
def test_a_bad_csv_table_is_a_data_error_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "ks.csv"
    path.write_bytes(b"a,b\n1,2.5\n")
    assert read_frame(path, ("a", "b")).to_dict("list") == {"a": [1], "b": [2.5]}
    path.write_bytes(content)
    with pytest.raises(DataError, match=named(path, message)):
        read_frame(path, ("a", "b"))


def test_missing_and_unreadable_inputs_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=named(tmp_path / "absent.json", "file not found$")):
        read_json(tmp_path / "absent.json")
    with pytest.raises(DataError, match=named(tmp_path, r"cannot be read \(Is a directory\)$")):
        read_frame(tmp_path)


# --------------------------------------------------------------------------------------------------
# Training resume files
# --------------------------------------------------------------------------------------------------

SETTINGS = TrainSettings(8, 1e-2, 2, 5, 5.0, seed=3, num_threads=1, bucket_batches=2, train_accuracy_rows=8)


def tiny_split(seed: int) -> EncodedSplit:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 7, size=24).astype(np.int32)
    tokens = np.where(np.arange(6) < lengths[:, None], rng.integers(4, 50, size=(24, 6)), 0).astype(np.int32)
    return EncodedSplit(tokens, lengths, rng.integers(0, 4, size=24), np.arange(24, dtype=np.int32))


def run(resume: Path | None) -> dict[str, torch.Tensor]:
    return train_model(ModelConfig(**CONFIG), SETTINGS, tiny_split(0), tiny_split(1), resume_path=resume, fingerprint="run", progress=False).state_dict


@pytest.mark.parametrize("damage", ["zero bytes", "truncated", "not a mapping"])
def test_a_corrupt_resume_file_is_discarded_with_a_warning_and_training_restarts(tmp_path: Path, damage: str) -> None:
    reference = run(None)
    resume = tmp_path / ".cache" / "train" / "ag_news-discriminative.pt"
    resume.parent.mkdir(parents=True)
    run(resume)  # leaves its last epoch's resume state, as a run killed after it would
    data = resume.read_bytes()
    if damage == "not a mapping":
        save_torch(resume, [torch.zeros(1)])
    else:
        resume.write_bytes(b"" if damage == "zero bytes" else data[: len(data) // 2])
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(resume))}: training resume state discarded \(.+\); training restarts from epoch 1$"):
        restarted = run(resume)
    assert all(torch.equal(restarted[k], reference[k]) for k in reference)  # the same weights as a run from scratch


def test_a_zero_byte_quantized_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    from lstm_ptq.quantization.checkpoints import load_quantized
    from lstm_ptq.quantization.spec import QuantSpec

    path = tmp_path / "model.pt"
    path.write_bytes(b"")  # torch.load's error has no message here: the report once failed on its first line
    with pytest.raises(DataError, match=named(path, r"not a loadable quantized checkpoint \(\w+")):
        load_quantized(path, ModelConfig(**CONFIG), QuantSpec(8))


def test_token_ids_beyond_the_models_vocabulary_are_a_data_error(tmp_path: Path) -> None:
    save_arrays(tmp_path / "test.npz", **good_split())
    split = load_split(tmp_path, "test", num_classes=4)
    check_vocabulary_fits(ModelConfig(**(CONFIG | {"vocab_size": 11})), split, "test.npz")  # the largest id is 10
    with pytest.raises(DataError, match=r"^test\.npz: token id 10 is outside the vocabulary of 10 words$"):
        check_vocabulary_fits(ModelConfig(**(CONFIG | {"vocab_size": 10})), split, "test.npz")


def test_an_output_path_that_cannot_be_written_is_an_error_naming_it(tmp_path: Path) -> None:
    """A real stage whose output folder is blocked (a file where the folder belongs; as root, permissions
    block nothing): the project's one-line error naming the path, exit 1, and the blocking file untouched."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bundled").symlink_to(REPO / "data" / "bundled")
    blocker = tmp_path / "data" / "raw"
    blocker.write_text("a file where the output folder belongs\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "stages/download.py", "dbpedia", "--params", str(REPO / "params.yaml"), "--root", str(tmp_path)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and str(blocker) in result.stderr and "Traceback" not in result.stderr
    assert blocker.read_text() == "a file where the output folder belongs\n"


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_stage_that_fails_on_its_last_output_leaves_all_its_previous_outputs(tmp_path: Path) -> None:
    """A real tokenize stage writes its tokenized folder, then its metrics file. Rerun with other settings
    and the metrics folder blocked, it fails on the metrics file: the tokenized folder it had already
    built must not replace the previous one (new data beside old metrics), so both stay byte for byte."""
    import yaml

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bundled").symlink_to(REPO / "data" / "bundled")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def stage(*command: str, params: Path = REPO / "params.yaml") -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, *command, "--params", str(params), "--root", str(tmp_path)]
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)

    assert stage("stages/download.py", "dbpedia").returncode == 0
    first = stage("stages/tokenize_data.py", "dbpedia")
    assert first.returncode == 0, first.stderr
    paths = ProjectPaths(tmp_path)
    tokenized_before, metrics_before = _tree_bytes(paths.tokenized("dbpedia")), paths.tokenize_metrics("dbpedia").read_bytes()

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tokenize"]["max_length"] = 8  # another tokenized folder than the first run's
    other = tmp_path / "other_params.yaml"
    other.write_text(yaml.safe_dump(params))
    metrics_dir = paths.tokenize_metrics("dbpedia").parent
    blocked = metrics_dir.with_name(metrics_dir.name + ".aside")
    metrics_dir.rename(blocked)
    metrics_dir.write_text("a file where the metrics folder belongs\n")

    second = stage("stages/tokenize_data.py", "dbpedia", params=other)
    assert second.returncode == 1 and second.stderr.startswith("error: ") and "Traceback" not in second.stderr, second.stderr
    assert _tree_bytes(paths.tokenized("dbpedia")) == tokenized_before
    assert sorted(p.name for p in paths.tokenized("dbpedia").parent.iterdir()) == ["dbpedia"]  # no pending copy left behind
    metrics_dir.unlink()
    blocked.rename(metrics_dir)
    assert paths.tokenize_metrics("dbpedia").read_bytes() == metrics_before
