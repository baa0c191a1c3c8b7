"""The PTQ grid through the real stage code on tiny trained models: quantize -> calibration sets ->
calibrate (+GPFQ) -> evaluate -> report."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
import runpy
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from test_training import clone_project, small_params

from lstm_ptq.artifacts import load_arrays, read_json, save_arrays
from lstm_ptq.cli import run_stage
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.models import ModelConfig, load_float_model
from lstm_ptq.paths import VARIANT_ROOT, ProjectPaths
from lstm_ptq.pipeline.calibration_sets import calibration_sets_stage
from lstm_ptq.pipeline.data import build_noise_trained_data
from lstm_ptq.pipeline.noise import quantized_noise_stage
from lstm_ptq.pipeline.ptq import calibrate_stage, quantize_stage
from lstm_ptq.pipeline.reports import GRID_COLUMNS
from lstm_ptq.preprocess import evenly_spaced, load_split
from lstm_ptq.quantization import is_calibrated, load_quantized, quant_scorer, using_fast_lstm
from lstm_ptq.robustness import load_noise_predictions, noise_curve
from lstm_ptq.settings import (
    CalibrationSettings,
    FinalLayerSettings,
    GridSettings,
    NoiseQuantizedSettings,
    NoiseTrainingSettings,
    QuantizationSettings,
    load_params,
    validate_params,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMES = ["class_unconditional", "class_conditional", "classes_1", "pseudo_class_conditional"]


def ptq_params() -> dict:
    params = small_params(learning_rate=0.01)
    params["grid"].update({"datasets": ["ag_news"], "bit_widths": [8, 3], "calibration_schemes": SCHEMES})
    params["quantization"] = {
        "act_high_percentile": 99.99,
        "weight_scaling": "minmax",
        "weight_high_percentile": 99.99,
        "act_narrow_range": True,
        "cell_state_bit_width": "same",
        "gate_bit_width": "same",
    }
    params["calibration"] = {"fraction": 0.25, "batch_size": 32, "decoder_feeding": "all_labels"}
    params["final_layer"] = {"algorithm": "gpfq", "batch_size": 64, "documents": 100, "error_batches": 2}
    validate_params(params)  # every key is one params.yaml may hold
    return params


@cache
def stage_script(name: str) -> dict[str, Any]:
    """The namespace of stages/<name>.py: its ``parser``, ``read_settings`` and ``main``."""
    return runpy.run_path(str(REPO / "stages" / f"{name}.py"), run_name="stage")


def run_in_process(name: str, params_file: Path, root: Path, *items: object, tree: str | None = None) -> None:
    """A stage exactly as its dvc.yaml command runs it (argv, params file validated as a whole, the
    script's settings), in this process; its error message is shown if it fails."""
    script = stage_script(name)
    argv = [*map(str, items), "--params", str(params_file), "--root", str(root), *(["--tree", tree] if tree else [])]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            run_stage(script["parser"], script["read_settings"], script["main"], argv)
    except SystemExit as exc:
        raise AssertionError(f"{name} {' '.join(argv)} exited {exc.code}: {stderr.getvalue()}") from None


def settings_of(name: str, params: dict, *items: object) -> Any:
    """What stages/<name>.py reads from ``params`` for these matrix items: the stage body's settings."""
    script = stage_script(name)
    return script["read_settings"](script["parser"].parse_args([str(item) for item in items]), params)


@pytest.fixture(scope="module")
def grid(small_ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    params = ptq_params()
    root = clone_project(small_ag_news, tmp_path_factory.mktemp("ptq") / "project", params)
    params_file = root / "params.yaml"
    for model_type in ("discriminative", "generative"):
        run_in_process("train", params_file, root, "ag_news", model_type)
        run_in_process("evaluate", params_file, root, "ag_news", model_type)
        run_in_process("calibration_sets", params_file, root, "ag_news", model_type)
        for scheme in SCHEMES:
            run_in_process("activation_ranges", params_file, root, "ag_news", model_type, scheme)
        for bit_width in (8, 3):
            run_in_process("quantize", params_file, root, "ag_news", model_type, bit_width)
            for scheme in SCHEMES:
                run_in_process("calibrate", params_file, root, "ag_news", model_type, bit_width, scheme)
    run_in_process("ptq_report", params_file, root)
    return root, params


def test_calibration_sets_share_one_size_and_differ_in_composition(grid: tuple[Path, dict]) -> None:
    root, _ = grid
    paths = ProjectPaths(root)
    rows = load_arrays(paths.calibration_sets("ag_news", "generative") / "rows.npz")
    summary = read_json(paths.calibration_sets("ag_news", "generative") / "summary.json")
    labels = load_split(paths.tokenized("ag_news"), "train").labels
    assert {len(r) for r in rows.values()} == {summary["size"]}
    assert summary["requested_size"] == round(0.25 * len(labels))
    # classes_1 can only draw from one class: the common size is that class's row count, if smaller
    largest_class = max(np.bincount(labels, minlength=4)[c] for c in np.unique(labels[rows["classes_1"]]))
    assert summary["size"] == min(summary["requested_size"], largest_class)
    assert len(np.unique(labels[rows["classes_1"]])) == 1
    counts = np.bincount(labels[rows["class_conditional"]], minlength=4)
    assert counts.max() - counts.min() <= 1


def test_a_tree_recalibrates_the_main_trees_float_model_with_its_own_settings(grid: tuple[Path, dict], tmp_path: Path) -> None:
    """trees.<name> with rerun_from calibration_sets: the PTQ stages rerun under variants/<name> on the main
    tree's data and float model, with the tree's settings, and leave the main tree's files as they were."""
    root, params = grid
    params = copy.deepcopy(params)
    grid = {"bit_widths": [3], "calibration_schemes": ["class_conditional"], "noise_quantized_schemes": ["class_conditional"]}
    overrides = {"quantization": {"cell_state_bit_width": 16}, "grid": grid}
    params["trees"] = {"wide": {"rerun_from": "calibration_sets", "params": overrides}}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    main_files = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "variants" not in p.parts}
    cell = ("ag_news", "discriminative")
    run_in_process("calibration_sets", params_file, root, *cell, tree="wide")
    run_in_process("activation_ranges", params_file, root, *cell, "class_conditional", tree="wide")
    run_in_process("quantize", params_file, root, *cell, 3, tree="wide")
    run_in_process("calibrate", params_file, root, *cell, 3, "class_conditional", tree="wide")
    tree, main = ProjectPaths(root / "variants" / "wide"), ProjectPaths(root)
    rows = load_arrays(tree.calibration_rows(*cell))
    assert list(rows) == ["class_conditional"]  # the tree's own scheme list
    wide = read_json(tree.calibrate_metrics(*cell, 3, "class_conditional"))
    same = read_json(main.calibrate_metrics(*cell, 3, "class_conditional"))
    assert (wide["cell_state_bit_width"], same["cell_state_bit_width"]) == (16, 3)
    assert wide["float_accuracy"] == same["float_accuracy"]  # one float model
    assert not (root / "variants" / "wide" / "models" / "float").exists()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "variants" not in p.parts} == main_files


def test_every_cell_has_metrics_and_a_calibrated_checkpoint(grid: tuple[Path, dict]) -> None:
    root, params = grid
    paths = ProjectPaths(root)
    for model_type in ("discriminative", "generative"):
        float_accuracy = read_json(paths.evaluate_metrics("ag_news", model_type))["accuracy"]
        config = ModelConfig.from_dict(read_json(paths.float_model_dir("ag_news", model_type) / "config.json"))
        for bit_width in (8, 3):
            for scheme in SCHEMES:
                metrics = read_json(paths.calibrate_metrics("ag_news", model_type, bit_width, scheme))
                assert metrics["documents"] == 400 and metrics["float_accuracy"] == float_accuracy
                assert metrics["accuracy_drop"] == pytest.approx(float_accuracy - metrics["accuracy"], abs=1e-6)
                assert metrics["calibration_documents"] == read_json(paths.calibration_sets("ag_news", model_type) / "summary.json")["size"]
                assert 0.0 < metrics["gpfq_changed_weight_fraction"] <= 1.0
                assert metrics["gpfq_documents"] == min(100, metrics["calibration_documents"])
                model = load_quantized(
                    paths.calibrated("ag_news", model_type, bit_width, scheme), config, QuantizationSettings.from_params(params).spec(bit_width)
                )
                assert is_calibrated(model)
        eight = read_json(paths.calibrate_metrics("ag_news", model_type, 8, "class_conditional"))
        assert abs(eight["accuracy_drop"]) < 0.05  # 8 bits stays close to float


def test_cells_of_one_scheme_share_its_ranges_and_differ_across_schemes(grid: tuple[Path, dict]) -> None:
    root, params = grid
    paths = ProjectPaths(root)
    config = ModelConfig.from_dict(read_json(paths.float_model_dir("ag_news", "generative") / "config.json"))
    ranges = {s: load_arrays(paths.activation_ranges("ag_news", "generative", s) / "ranges.npz") for s in SCHEMES}
    for bit_width in (8, 3):
        model = load_quantized(
            paths.calibrated("ag_news", "generative", bit_width, "classes_1"), config, QuantizationSettings.from_params(params).spec(bit_width)
        )
        stored = {
            name: module.value.detach().numpy().reshape(-1) for name, module in model.named_modules() if isinstance(module, ParameterFromRuntimeStatsScaling)
        }
        assert set(stored) == set(ranges["classes_1"])
        assert all(np.array_equal(stored[name], ranges["classes_1"][name]) for name in stored)
    # a one-class calibration set sees different activations than a class-conditional one
    assert any(not np.array_equal(ranges["classes_1"][n], ranges["class_conditional"][n]) for n in ranges["classes_1"])
    summary = read_json(paths.activation_ranges("ag_news", "generative", "classes_1") / "summary.json")
    assert summary["calibration_documents"] == read_json(paths.calibration_sets("ag_news", "generative") / "summary.json")["size"]


def test_calibrate_without_its_ranges_names_the_missing_file(grid: tuple[Path, dict], tmp_path: Path) -> None:
    root, params = grid
    moved = tmp_path / "ranges"
    source = ProjectPaths(root).activation_ranges("ag_news", "discriminative", "classes_1")
    source.rename(moved)
    try:
        with pytest.raises(DataError, match=r"activation_ranges/ag_news/discriminative/classes_1/ranges\.npz: missing"):
            calibrate_stage(
                "ag_news", "discriminative", 3, "classes_1", *settings_of("calibrate", params, "ag_news", "discriminative", 3, "classes_1"), ProjectPaths(root)
            )
    finally:
        moved.rename(source)


def test_uncalibrated_checkpoint_is_refused_where_a_calibrated_one_is_expected(grid: tuple[Path, dict]) -> None:
    root, params = grid
    paths = ProjectPaths(root)
    config = ModelConfig.from_dict(read_json(paths.float_model_dir("ag_news", "discriminative") / "config.json"))
    with pytest.raises(DataError, match="not calibrated"):
        load_quantized(paths.quantized("ag_news", "discriminative", 3), config, QuantizationSettings.from_params(params).spec(3))
    with pytest.raises(DataError, match="bit_width=3"):  # a checkpoint from another bit width
        load_quantized(paths.quantized("ag_news", "discriminative", 3), config, QuantizationSettings.from_params(params).spec(8), calibrated=False)


def test_report_holds_the_whole_grid(grid: tuple[Path, dict]) -> None:
    root, _ = grid
    with open(root / "metrics/ptq_grid.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * len(SCHEMES)
    for name in ("figure6.png", "figure7.png", "figure8.png", "figure11.png", "figure7_ag_news.csv", "figure11_ag_news_generative.csv"):
        assert (root / "plots/ptq" / name).stat().st_size > 0
    with open(root / "plots/ptq/figure7_ag_news.csv", newline="") as handle:
        series = list(csv.DictReader(handle))
    assert [int(r["bit_width"]) for r in series] == [8, 3]
    assert set(series[0]) == {"bit_width", "discriminative", "generative"}


def test_tracked_outputs_hold_no_wall_times(grid: tuple[Path, dict]) -> None:
    root, _ = grid
    paths = ProjectPaths(root)
    with open(paths.ptq_grid(), newline="") as handle:
        header = next(csv.reader(handle))
    assert header == GRID_COLUMNS and not any("seconds" in column for column in header)
    for model_type in ("discriminative", "generative"):
        assert not any("seconds" in key for key in read_json(paths.train_metrics("ag_news", model_type)))
        for scheme in SCHEMES:
            assert not any("seconds" in key for key in read_json(paths.activation_ranges_summary("ag_news", model_type, scheme)))
            for bit_width in (8, 3):
                assert not any("seconds" in key for key in read_json(paths.calibrate_metrics("ag_news", model_type, bit_width, scheme)))


def test_ptq_report_csvs_match_the_csv_module(grid: tuple[Path, dict]) -> None:
    """pandas writes the report byte for byte as ``csv.DictWriter`` would (header, None as empty, float repr)."""
    import io

    root, _ = grid
    paths = ProjectPaths(root)
    for path in (paths.ptq_grid(), paths.ptq_plots() / "figure7_ag_news.csv", paths.ptq_plots() / "figure11_ag_news_generative.csv"):
        text = path.read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        assert text == buffer.getvalue()


def test_bad_grid_parameters_are_named(grid: tuple[Path, dict]) -> None:
    root, params = grid
    with pytest.raises(ParamError, match="quantization.bit_width"):
        quantize_stage("ag_news", "discriminative", 17, QuantizationSettings.from_params(params), ProjectPaths(root))
    with pytest.raises(ParamError, match="unknown calibration scheme"):
        calibrate_stage(
            "ag_news", "discriminative", 8, "loudest_class", *settings_of("calibrate", params, "ag_news", "discriminative", 8, "classes_1"), ProjectPaths(root)
        )
    bad = copy.deepcopy(params)
    bad["calibration"]["fraction"] = 1.5
    with pytest.raises(ParamError, match=r"calibration\.fraction: 1\.5 is not in \(0, 1\]"):
        settings_of("calibration_sets", bad, "ag_news", "discriminative")
    with pytest.raises(ParamError, match="calibration.fraction"):  # the stage body checks it too
        calibration_sets_stage("ag_news", "discriminative", SCHEMES, CalibrationSettings(1.5, 32, "all_labels"), params["seed"], ProjectPaths(root))
    # the stage scripts name a bad matrix item before they touch anything
    for name, items, message in (
        ("quantize", ("ag_news", "discriminative", 17), "bit_width: 17 is outside"),
        ("calibrate", ("ag_news", "discriminative", 8, "loudest_class"), "unknown calibration scheme"),
    ):
        with pytest.raises(AssertionError, match=message):
            run_in_process(name, root / "params.yaml", root, *items)


def test_gpfq_subset_is_evenly_spread_and_keeps_the_class_mix() -> None:
    labels = np.repeat(np.arange(4), 250)[np.random.default_rng(0).permutation(1000)]
    rows = np.sort(np.random.default_rng(1).choice(1000, 600, replace=False))
    subset = rows[evenly_spaced(len(rows), 200)]
    assert len(subset) == len(np.unique(subset)) == 200 and set(subset) <= set(rows)
    mix = np.bincount(labels[subset], minlength=4) / 200
    assert np.abs(mix - np.bincount(labels[rows], minlength=4) / 600).max() < 0.05
    assert np.array_equal(rows[evenly_spaced(len(rows), None)], rows) and np.array_equal(rows[evenly_spaced(len(rows), 600)], rows)


def test_final_layer_and_calibration_settings_are_read() -> None:
    params = ptq_params()
    assert FinalLayerSettings.from_params(params) == FinalLayerSettings("gpfq", 64, 100, 2)
    assert CalibrationSettings.from_params(params) == CalibrationSettings(0.25, 32, "all_labels")
    params["final_layer"]["documents"] = None  # null: the whole calibration set (the paper)
    assert FinalLayerSettings.from_params(params).documents is None


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("final_layer", "documents", 0, r"final_layer\.documents: 0 must be >= 1, or null"),
        ("final_layer", "batch_size", 0, r"final_layer\.batch_size: 0 must be >= 1"),
        ("final_layer", "documents", "all", r"final_layer\.documents: 'all' is not a"),
        ("final_layer", "error_batches", -1, r"final_layer\.error_batches: -1 must be >= 0"),
        ("final_layer", "algorithm", "adaround", r"final_layer\.algorithm: unknown algorithm 'adaround'"),
        ("calibration", "batch_size", 0, r"calibration\.batch_size: 0 must be >= 1"),
        ("calibration", "fraction", 0, r"calibration\.fraction: 0\.0 is not in \(0, 1\]"),
        ("calibration", "decoder_feeding", "own_label", r"calibration\.decoder_feeding: unknown feeding 'own_label'"),
    ],
)
def test_bad_gpfq_parameters_are_named(section: str, key: str, value: object, message: str) -> None:
    params = ptq_params()
    params[section][key] = value
    read = FinalLayerSettings if section == "final_layer" else CalibrationSettings
    with pytest.raises(ParamError, match=message):
        read.from_params(params)


def test_old_calibration_keys_are_rejected_with_their_new_home(tmp_path: Path) -> None:
    """The final layer's keys left ``calibration`` for ``final_layer``; the schemes moved to the grid."""
    for key, value in (("final_layer_algorithm", "gpfq"), ("gpfq_documents", 100), ("schemes", SCHEMES)):
        params = ptq_params()
        params["calibration"][key] = value
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params), encoding="utf-8")
        with pytest.raises(ParamError, match=rf"calibration\.{key}: unknown key"):
            load_params(path)


# --------------------------------------------------------------------------------------------------
# Figure 10: the calibrated cells on the noisy test sets, and the noise report
# --------------------------------------------------------------------------------------------------

NOISE_LEVELS = [0, 0.05, 0.2]
NOISE_SCHEMES = ["class_conditional", "class_unconditional"]


def noise_params(params: dict, test_documents: int | None) -> dict:
    params = copy.deepcopy(params)
    params["grid"].update(
        {
            "datasets": ["ag_news"],
            "noise_models": ["uniform_substitution"],
            "noise_quantized_schemes": NOISE_SCHEMES,
            "noise_quantized_noise_models": ["uniform_substitution"],
        }
    )
    params["tokenize"].update({"lowercase": True, "max_length": 40})  # as the fixture tokenized
    params["noise"] = {"levels": NOISE_LEVELS}
    params["noise_quantized"] = {"test_documents": test_documents}
    return params


def run_script(script: str, *args: str) -> None:
    """A stage script as dvc runs it; its stderr is shown if it fails."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, str(REPO / "stages" / script), *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{script} {' '.join(args)} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def noisy_grid(grid: tuple[Path, dict]) -> tuple[Path, dict]:
    root, grid_params = grid
    params = noise_params(grid_params, None)
    params_file = root / "noise_params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    options = ["--params", str(params_file), "--root", str(root)]
    run_script("noisy_test.py", "ag_news", "uniform_substitution", *options)
    for model_type in ("discriminative", "generative"):
        run_in_process("noise_float", params_file, root, "ag_news", model_type, "uniform_substitution")
        for bit_width in (8, 3):
            for scheme in NOISE_SCHEMES:
                if (model_type, bit_width, scheme) != ("generative", 3, "class_conditional"):
                    run_in_process("noise_quantized", params_file, root, "ag_news", model_type, bit_width, scheme, "uniform_substitution")
    # one cell and the report through their stage scripts, as dvc runs them
    run_script("noise_quantized.py", "ag_news", "generative", "3", "class_conditional", "uniform_substitution", *options)
    run_script("noise_report.py", *options)
    return root, params


def fresh_level_zero(root: Path, params: dict, model_type: str, bit_width: int, scheme: str, documents: np.ndarray) -> np.ndarray:
    """The calibrated cell's predictions on level 0's ``documents``, scored here as every other level is."""
    paths = ProjectPaths(root)
    config, _ = load_float_model(paths, "ag_news", model_type)
    qmodel = load_quantized(paths.calibrated("ag_news", model_type, bit_width, scheme), config, QuantizationSettings.from_params(params).spec(bit_width))
    with using_fast_lstm(qmodel):
        _, predictions = noise_curve(quant_scorer(qmodel), paths.noisy("ag_news", "uniform_substitution"), [0], params["evaluate"]["batch_size"], 4, documents)
    return predictions.predictions[0]


def copied_tree(root: Path, tmp_path: Path) -> ProjectPaths:
    """A copy of the noise fixture's tree, for a test that rewrites or removes outputs: the report test
    reads the fixture's own outputs for the whole split."""
    shutil.copytree(root, tmp_path / "tree")
    return ProjectPaths(tmp_path / "tree")


def test_noise_level_zero_takes_the_calibrated_cells_predictions_which_equal_scoring_it_again(noisy_grid: tuple[Path, dict], tmp_path: Path) -> None:
    root, params = noisy_grid
    paths = ProjectPaths(root)
    for model_type in ("discriminative", "generative"):
        for bit_width in (8, 3):
            for scheme in NOISE_SCHEMES:
                noisy = read_json(paths.quantized_noise_metrics("ag_news", model_type, bit_width, scheme, "uniform_substitution"))
                clean = read_json(paths.calibrate_metrics("ag_news", model_type, bit_width, scheme))
                assert noisy["documents"] == clean["documents"] == 400
                assert noisy["accuracy@0"] == clean["accuracy"]
                saved = load_noise_predictions(paths.quantized_noise_predictions("ag_news", model_type, bit_width, scheme, "uniform_substitution"), 400, 4)
                assert np.array_equal(saved.predictions[0], fresh_level_zero(root, params, model_type, bit_width, scheme, np.arange(400)))
        eight_bit = read_json(paths.quantized_noise_metrics("ag_news", model_type, 8, "class_conditional", "uniform_substitution"))
        assert eight_bit["accuracy@0.2"] < eight_bit["accuracy@0"]  # a fifth of all characters replaced must hurt
    # on a subset the level-0 documents are scored in other batches than the calibrate stage's: the same predictions
    copied = copied_tree(root, tmp_path)
    cell = ("ag_news", "generative", 3, "class_conditional", "uniform_substitution")
    quantized_noise_stage(*cell, *settings_of("noise_quantized", noise_params(params, 150), *cell), copied)
    subset = load_noise_predictions(copied.quantized_noise_predictions(*cell), 400, 4)
    assert np.array_equal(subset.documents, evenly_spaced(400, 150))
    assert np.array_equal(subset.predictions[0], fresh_level_zero(copied.root, params, "generative", 3, "class_conditional", subset.documents))


def test_noise_refuses_clean_predictions_of_another_split(noisy_grid: tuple[Path, dict], tmp_path: Path) -> None:
    root, params = noisy_grid
    paths = copied_tree(root, tmp_path)
    cell = ("ag_news", "discriminative", 8, "class_conditional", "uniform_substitution")
    scores_file = paths.calibrated_test_scores(*cell[:4])
    arrays = load_arrays(scores_file)
    save_arrays(scores_file, scores=arrays["scores"][:399], predictions=arrays["predictions"][:399])
    with pytest.raises(DataError, match=r"test_scores.npz: scores \(399, 4\) and predictions \(399,\) do not match the test split \(400 documents"):
        quantized_noise_stage(*cell, *settings_of("noise_quantized", noise_params(params, None), *cell), paths)


def test_noise_without_level_zero_scores_every_level_and_reads_no_clean_predictions(noisy_grid: tuple[Path, dict], tmp_path: Path) -> None:
    root, params = noisy_grid
    paths = copied_tree(root, tmp_path)
    cell = ("ag_news", "generative", 3, "class_unconditional", "uniform_substitution")
    whole = load_noise_predictions(paths.quantized_noise_predictions(*cell), 400, 4)
    paths.calibrated_test_scores(*cell[:4]).unlink()  # not needed when no level is the clean split
    levels = NOISE_LEVELS[1:]
    no_clean = noise_params(params, None)
    no_clean["noise"] = {"levels": levels}
    metrics = quantized_noise_stage(*cell, *settings_of("noise_quantized", no_clean, *cell), paths)
    assert sorted(k for k in metrics if k.startswith("accuracy@")) == ["accuracy@0.05", "accuracy@0.2"]
    scored = load_noise_predictions(paths.quantized_noise_predictions(*cell), 400, 4)
    assert scored.levels.tolist() == levels
    assert np.array_equal(scored.predictions, whole.predictions[1:])  # the same rows as in the run with level 0


def test_noise_report_holds_every_curve_and_draws_figures_9_and_10(noisy_grid: tuple[Path, dict]) -> None:
    root, _ = noisy_grid
    with open(root / "metrics/noise_grid.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * (1 + 2 * len(NOISE_SCHEMES)) * len(NOISE_LEVELS)
    figures = root / "plots/noise/figures"
    for name in (
        "figure9_uniform_substitution.png",
        "figure10_class_conditional_uniform_substitution.png",
        "figure10_class_unconditional_uniform_substitution.png",
    ):
        assert (figures / name).stat().st_size > 0
    with open(figures / "figure10_ag_news_generative_class_conditional_uniform_substitution.csv", newline="") as handle:
        series = list(csv.DictReader(handle))
    assert [float(r["noise_level"]) for r in series] == NOISE_LEVELS and list(series[0]) == ["noise_level", "w8", "w3", "float"]
    cell = read_json(ProjectPaths(root).quantized_noise_metrics("ag_news", "generative", 3, "class_conditional", "uniform_substitution"))
    assert [float(r["w3"]) for r in series] == [cell[f"accuracy@{level}"] for level in ("0", "0.05", "0.2")]
    floats = read_json(root / "metrics/noise/float/ag_news/generative/uniform_substitution.json")
    assert float(series[-1]["float"]) == floats["accuracy@0.2"]


def test_noise_on_a_test_subset_scores_the_same_documents_at_every_level(noisy_grid: tuple[Path, dict]) -> None:
    root, params = noisy_grid
    cell = ("ag_news", "discriminative", 8, "class_conditional", "uniform_substitution")
    subset = quantized_noise_stage(*cell, *settings_of("noise_quantized", noise_params(params, 100), *cell), ProjectPaths(root))
    assert subset["documents"] == 100
    rows = evenly_spaced(400, 100)
    assert len(np.unique(rows)) == 100 and rows[0] == 0 and rows[-1] == 399
    assert all(round(subset[f"accuracy@{level}"] * 100, 6).is_integer() for level in ("0", "0.05", "0.2"))
    assert np.array_equal(evenly_spaced(400, None), np.arange(400)) and np.array_equal(evenly_spaced(400, 1000), np.arange(400))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("grid.noise_quantized_schemes", ["classes_2"], r"grid.noise_quantized_schemes\[0\]: 'classes_2' is not in grid.calibration_schemes"),
        ("grid.noise_quantized_schemes", ["loudest_class"], r"grid.noise_quantized_schemes\[0\]: unknown calibration scheme"),
        ("grid.noise_quantized_noise_models", ["qwerty_typo"], r"grid.noise_quantized_noise_models\[0\]: 'qwerty_typo' is not in grid.noise_models"),
        ("grid.noise_quantized_noise_models", ["cosmic_rays"], "cosmic_rays"),
        ("grid.noise_quantized_noise_models", [], "grid.noise_quantized_noise_models: empty"),
        ("noise_quantized.test_documents", 0, "noise_quantized.test_documents"),
    ],
)
def test_bad_quantized_noise_parameters_are_named(key: str, value: object, message: str) -> None:
    params = noise_params(ptq_params(), None)
    section, name = key.split(".")
    params[section][name] = value
    read = GridSettings if section == "grid" else NoiseQuantizedSettings
    with pytest.raises(ParamError, match=message):
        read.from_params(params)


# --------------------------------------------------------------------------------------------------
# Figure 16: a generative model trained with noise, in the variant tree, through the same stage code
# --------------------------------------------------------------------------------------------------


def noise_training_params(params: dict) -> dict:
    params = copy.deepcopy(params)
    params["grid"]["noise_trained_datasets"] = ["ag_news"]
    params["noise_training"] = {"noise_model": "uniform_substitution", "level": 0.1, "eval_level": 0.2}
    return params


@pytest.fixture(scope="module")
def noise_trained(noisy_grid: tuple[Path, dict]) -> tuple[Path, dict]:
    root, noisy_params = noisy_grid
    params = noise_training_params(noisy_params)
    params_file = root / "noise_training_params.yaml"
    params_file.write_text(yaml.safe_dump(params), encoding="utf-8")
    options = ["--params", str(params_file), "--root", str(root)]
    run_script("noise_train_data.py", "ag_news", *options)
    variant = root / VARIANT_ROOT
    for name, items in (
        ("train", ()),
        ("evaluate", ()),
        ("noise_float", ("uniform_substitution",)),
        ("calibration_sets", ()),
        ("activation_ranges", ("class_conditional",)),
    ):
        run_in_process(name, params_file, variant, "ag_news", "generative", *items)
    for bit_width in (8, 3):
        run_in_process("quantize", params_file, variant, "ag_news", "generative", bit_width)
        run_in_process("calibrate", params_file, variant, "ag_news", "generative", bit_width, "class_conditional")
        run_in_process("noise_quantized", params_file, variant, "ag_news", "generative", bit_width, "class_conditional", "uniform_substitution")
    run_script("figure16.py", *options)
    return root, params


def test_noise_trained_data_corrupts_train_and_valid_only(noise_trained: tuple[Path, dict], tmp_path: Path) -> None:
    root, params = noise_trained
    main, variant = ProjectPaths(root).tokenized("ag_news"), ProjectPaths(root / VARIANT_ROOT).tokenized("ag_news")
    for name in ("test.npz", "vocab.json", "classes.json"):
        assert (variant / name).read_bytes() == (main / name).read_bytes()
    stats = read_json(variant / "noise_training.json")
    for split in ("train", "valid"):
        clean, noisy = load_split(main, split), load_split(variant, split)
        assert np.array_equal(clean.labels, noisy.labels) and np.array_equal(clean.source_rows, noisy.source_rows)
        assert not np.array_equal(clean.tokens, noisy.tokens)
        assert abs(stats["splits"][split]["char_change_rate"] - 0.1) < 0.015  # epsilon = 0.1 of all characters
        assert noisy.tokens.max() < len(read_json(main / "vocab.json"))  # encoded with the clean vocabulary
    assert stats["seed"] == params["seed"] + 1  # independent of the test corruption
    # deterministic: the same params give byte-identical training data
    copy_root = tmp_path / "again"
    shutil.copytree(root / "data", copy_root / "data")
    build_noise_trained_data("ag_news", *settings_of("noise_train_data", params, "ag_news"), copy_root)
    assert (copy_root / VARIANT_ROOT / "data/tokenized/ag_news/train.npz").read_bytes() == (variant / "train.npz").read_bytes()


def test_figure16_compares_clean_and_noise_trained_cells(noise_trained: tuple[Path, dict]) -> None:
    root, _ = noise_trained
    trees = {"clean_trained": ProjectPaths(root), "noise_trained": ProjectPaths(root / VARIANT_ROOT)}
    with open(root / "plots/noise/figure16/figure16_ag_news.csv", newline="") as handle:
        series = list(csv.DictReader(handle))
    assert [int(r["bit_width"]) for r in series] == [8, 3]
    for row in series:
        for name, paths in trees.items():
            cell = read_json(paths.quantized_noise_metrics("ag_news", "generative", int(row["bit_width"]), "class_conditional", "uniform_substitution"))
            assert float(row[name]) == cell["accuracy@0.2"]
    assert (root / "plots/noise/figure16/figure16.png").stat().st_size > 0
    summary = read_json(root / "metrics/figure16.json")["ag_news"]
    assert set(summary) == {"8", "3", "float"}
    assert (
        summary["float"]["noise_trained"] == read_json(root / VARIANT_ROOT / "metrics/noise/float/ag_news/generative/uniform_substitution.json")["accuracy@0.2"]
    )
    clean_model = torch.load(root / "models/float/ag_news/generative/model.pt", weights_only=True)
    noisy_model = torch.load(root / VARIANT_ROOT / "models/float/ag_news/generative/model.pt", weights_only=True)
    assert not torch.equal(clean_model["embedding.weight"], noisy_model["embedding.weight"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("noise_training.eval_level", 0.3, r"noise_training.eval_level: 0.3 is not in noise.levels"),
        ("noise_training.noise_model", "typo", r"noise_training.noise_model: unknown noise model 'typo'"),
        ("noise_training.level", 1.5, "noise_training.level"),
        ("grid.noise_trained_datasets", ["imdb"], r"grid.noise_trained_datasets\[0\]: unknown dataset 'imdb'"),
        ("grid.noise_trained_datasets", ["dbpedia"], r"grid.noise_trained_datasets\[0\]: 'dbpedia' is not in grid.datasets"),
    ],
)
def test_bad_noise_training_parameters_are_named(key: str, value: object, message: str) -> None:
    params = noise_training_params(noise_params(ptq_params(), None))
    section, name = key.split(".")
    params[section][name] = value
    with pytest.raises(ParamError, match=message):
        if section == "grid":
            GridSettings.from_params(params)
        else:
            NoiseTrainingSettings.from_params(params, with_eval_level=True)


def test_noise_training_eval_level_is_read_only_for_figure16() -> None:
    """The data and training stages need no test noise level: only Figure 16 reads ``eval_level``."""
    params = noise_training_params(noise_params(ptq_params(), None))
    assert NoiseTrainingSettings.from_params(params) == NoiseTrainingSettings("uniform_substitution", 0.1)
    assert NoiseTrainingSettings.from_params(params, with_eval_level=True).eval_level == 0.2
    del params["noise_training"]["eval_level"]
    assert NoiseTrainingSettings.from_params(params).eval_level is None


def test_figure13_compares_every_calibration_set_of_the_grid(grid: tuple[Path, dict]) -> None:
    """Figure 13's KS (embedding and LSTM activations on a calibration set vs on analysis.schemes[0]'s) for
    every scheme of the grid, not only the compared ones, so a reader sees which sets are in fact
    imbalanced; its bootstrapped gaps stay with analysis.schemes."""
    root, params = grid
    assert params["analysis"]["schemes"] == ["class_conditional", "class_unconditional"]
    run_in_process("ks_analysis", root / "params.yaml", root, "ag_news", "discriminative")
    ks = pd.read_csv(root / "metrics/analysis/ag_news/discriminative/ks.csv")
    figure13 = ks.loc[ks["figure"] == 13]
    expected = {(layer, scheme, bits) for layer in ("embedding", "lstm") for scheme in set(SCHEMES) - {"class_conditional"} for bits in (8, 3)}
    assert set(zip(figure13["layer"], figure13["scheme"], figure13["bit_width"])) == expected
    assert set(figure13["against"]) == {"class_conditional"}
    one_class = figure13.loc[(figure13["scheme"] == "classes_1") & (figure13["layer"] == "embedding"), "ks_statistic"].min()
    unconditional = figure13.loc[(figure13["scheme"] == "class_unconditional") & (figure13["layer"] == "embedding"), "ks_statistic"].max()
    assert one_class > unconditional  # one class's documents are further from the balanced set than a random draw
    gaps = pd.read_csv(root / "metrics/analysis/ag_news/discriminative/ks_gaps.csv")
    assert set(gaps.loc[gaps["figure"] == 13, "first"]) == {"embedding: class_unconditional vs class_conditional"}
