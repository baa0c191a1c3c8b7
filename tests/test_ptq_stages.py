"""The PTQ grid through the real stage code on tiny trained models: quantize -> calibration sets ->
calibrate (+GPFQ) -> evaluate -> report."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

from lstm_ptq.artifacts import load_arrays, read_json
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.evaluation import evaluate_stage
from lstm_ptq.figures import ptq_report_stage
from lstm_ptq.models import ModelConfig
from lstm_ptq.preprocess import load_split
from lstm_ptq.ptq import ProjectPaths, activation_ranges_stage, calibrate_stage, calibration_params, calibration_sets_stage, gpfq_rows, quantize_stage
from lstm_ptq.quantize import QuantSpec, is_calibrated, load_quantized
from lstm_ptq.training import train_stage
from test_training import clone_project, small_params

SCHEMES = ["class_unconditional", "class_conditional", "classes_1", "pseudo_class_conditional"]


def ptq_params() -> dict:
    params = small_params(learning_rate=0.01)
    params["quantization"] = {"bit_widths": [8, 3], "act_high_percentile": 99.99, "weight_scaling": "minmax", "weight_high_percentile": 99.99, "act_narrow_range": True}
    params["calibration"] = {"schemes": SCHEMES, "fraction": 0.25, "final_layer_algorithm": "gpfq", "batch_size": 32, "error_batches": 2, "gpfq_batch_size": 64, "gpfq_documents": 100}
    return params


@pytest.fixture(scope="module")
def grid(small_ag_news: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    params = ptq_params()
    root = clone_project(small_ag_news, tmp_path_factory.mktemp("ptq") / "project", params)
    for model_type in ("discriminative", "generative"):
        train_stage(params, "ag_news", model_type, root)
        evaluate_stage(params, "ag_news", model_type, root)
        calibration_sets_stage(params, "ag_news", model_type, root)
        for scheme in SCHEMES:
            activation_ranges_stage(params, "ag_news", model_type, scheme, root)
        for bit_width in (8, 3):
            quantize_stage(params, "ag_news", model_type, bit_width, root)
            for scheme in SCHEMES:
                calibrate_stage(params, "ag_news", model_type, bit_width, scheme, root)
    ptq_report_stage(root, ["ag_news"], ["discriminative", "generative"], [8, 3], SCHEMES)
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
                model = load_quantized(paths.calibrated("ag_news", model_type, bit_width, scheme), config, QuantSpec.from_params(params, bit_width))
                assert is_calibrated(model)
        eight = read_json(paths.calibrate_metrics("ag_news", model_type, 8, "class_conditional"))
        assert abs(eight["accuracy_drop"]) < 0.05  # 8 bits stays close to float


def test_cells_of_one_scheme_share_its_ranges_and_differ_across_schemes(grid: tuple[Path, dict]) -> None:
    root, params = grid
    paths = ProjectPaths(root)
    config = ModelConfig.from_dict(read_json(paths.float_model_dir("ag_news", "generative") / "config.json"))
    ranges = {s: load_arrays(paths.activation_ranges("ag_news", "generative", s) / "ranges.npz") for s in SCHEMES}
    for bit_width in (8, 3):
        model = load_quantized(paths.calibrated("ag_news", "generative", bit_width, "classes_1"), config, QuantSpec.from_params(params, bit_width))
        stored = {name: module.value.detach().numpy().reshape(-1) for name, module in model.named_modules() if isinstance(module, ParameterFromRuntimeStatsScaling)}
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
            calibrate_stage(params, "ag_news", "discriminative", 3, "classes_1", root)
    finally:
        moved.rename(source)


def test_uncalibrated_checkpoint_is_refused_where_a_calibrated_one_is_expected(grid: tuple[Path, dict]) -> None:
    root, params = grid
    paths = ProjectPaths(root)
    config = ModelConfig.from_dict(read_json(paths.float_model_dir("ag_news", "discriminative") / "config.json"))
    with pytest.raises(DataError, match="not calibrated"):
        load_quantized(paths.quantized("ag_news", "discriminative", 3), config, QuantSpec.from_params(params, 3))
    with pytest.raises(DataError, match="bit_width=3"):  # a checkpoint from another bit width
        load_quantized(paths.quantized("ag_news", "discriminative", 3), config, QuantSpec.from_params(params, 8), calibrated=False)


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


def test_bad_grid_parameters_are_named(grid: tuple[Path, dict]) -> None:
    root, params = grid
    with pytest.raises(ParamError, match="quantization.bit_width"):
        quantize_stage(params, "ag_news", "discriminative", 17, root)
    with pytest.raises(ParamError, match="unknown calibration scheme"):
        calibrate_stage(params, "ag_news", "discriminative", 8, "loudest_class", root)
    bad = {**params, "calibration": {**params["calibration"], "fraction": 1.5}}
    with pytest.raises(ParamError, match="calibration.fraction"):
        calibration_sets_stage(bad, "ag_news", "discriminative", root)


def test_gpfq_subset_is_evenly_spread_and_keeps_the_class_mix() -> None:
    labels = np.repeat(np.arange(4), 250)[np.random.default_rng(0).permutation(1000)]
    rows = np.sort(np.random.default_rng(1).choice(1000, 600, replace=False))
    subset = gpfq_rows(rows, 200)
    assert len(subset) == len(np.unique(subset)) == 200 and set(subset) <= set(rows)
    mix = np.bincount(labels[subset], minlength=4) / 200
    assert np.abs(mix - np.bincount(labels[rows], minlength=4) / 600).max() < 0.05
    assert np.array_equal(gpfq_rows(rows, None), rows) and np.array_equal(gpfq_rows(rows, 600), rows)


@pytest.mark.parametrize(("key", "value", "message"), [("gpfq_documents", 0, "calibration.gpfq_documents"), ("gpfq_batch_size", 0, "calibration.gpfq_batch_size"), ("gpfq_documents", "all", "calibration.gpfq_documents")])
def test_bad_gpfq_parameters_are_named(key: str, value: object, message: str) -> None:
    params = ptq_params()
    params["calibration"][key] = value
    with pytest.raises(ParamError, match=message):
        calibration_params(params)
