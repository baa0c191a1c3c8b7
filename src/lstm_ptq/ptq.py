"""Stage bodies of the PTQ grid (paper Figure 1): quantize per bit width, calibration sets per model,
calibrate + GPFQ + evaluate per (bit width, calibration scheme)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .artifacts import load_arrays, read_json, save_arrays, write_json
from .calibration import NEEDS_PREDICTIONS, build_calibration_sets, check_scheme
from .config import get_seed, get_typed, section
from .errors import DataError, ParamError
from .evaluation import evaluate, float_scorer, score_split
from .models import check_vocabulary_fits, load_float_model
from .paths import ProjectPaths as _BasePaths
from .preprocess import load_split
from .quantize import (
    QuantSpec,
    activation_ranges,
    apply_gpfq,
    calibrate,
    check_algorithm,
    final_layer_output_error,
    hidden_state_stats,
    load_quantized,
    quant_scorer,
    quantize,
    save_quantized,
    set_activation_ranges,
    token_batches,
)

# Activation ranges do not depend on the bit width (the statistics come from a float pass), so they
# are observed once per scheme at this bit width and divided by each cell's integer range.
OBSERVE_BIT_WIDTH = 8


class ProjectPaths(_BasePaths):
    """Where the PTQ stages read and write (extends the float stages' layout)."""

    def quantized(self, dataset: str, model_type: str, bit_width: int) -> Path:
        """The quantized model before calibration (output of ``quantize``)."""
        return self.root / "models" / "quantized" / dataset / model_type / f"w{bit_width}" / "model.pt"

    def calibration_sets(self, dataset: str, model_type: str) -> Path:
        return self.root / "data" / "calibration" / dataset / model_type

    def activation_ranges(self, dataset: str, model_type: str, scheme: str) -> Path:
        """Calibrated activation ranges of one scheme, shared by every bit width (output of ``activation_ranges``)."""
        return self.root / "models" / "activation_ranges" / dataset / model_type / scheme

    def calibrated(self, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
        return self.root / "models" / "calibrated" / dataset / model_type / f"w{bit_width}" / scheme / "model.pt"

    def calibrate_metrics(self, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
        return self.root / "metrics" / "calibrate" / dataset / model_type / f"w{bit_width}" / f"{scheme}.json"


def calibration_params(params: Mapping[str, Any]) -> dict[str, Any]:
    where = "calibration"
    node = section(params, where)
    schemes = get_typed(node, "schemes", list, where)
    if not schemes:
        raise ParamError(f"{where}.schemes: empty; expected at least one calibration scheme")
    out = {
        "schemes": [check_scheme(str(s)) for s in schemes],
        "fraction": get_typed(node, "fraction", float, where),
        "final_layer_algorithm": check_algorithm(get_typed(node, "final_layer_algorithm", str, where), f"{where}.final_layer_algorithm"),
        "batch_size": get_typed(node, "batch_size", int, where),
        "error_batches": get_typed(node, "error_batches", int, where),
        "gpfq_batch_size": get_typed(node, "gpfq_batch_size", int, where),
        "gpfq_documents": None if node.get("gpfq_documents") is None else get_typed(node, "gpfq_documents", int, where),
    }
    if not 0.0 < out["fraction"] <= 1.0:
        raise ParamError(f"{where}.fraction: {out['fraction']!r} is not in (0, 1]")
    if out["batch_size"] < 1 or out["error_batches"] < 0:
        raise ParamError(f"{where}: batch_size must be >= 1 and error_batches >= 0")
    if out["gpfq_batch_size"] < 1:
        raise ParamError(f"{where}.gpfq_batch_size: {out['gpfq_batch_size']} must be >= 1")
    if out["gpfq_documents"] is not None and out["gpfq_documents"] < 1:
        raise ParamError(f"{where}.gpfq_documents: {out['gpfq_documents']} must be >= 1, or null for the whole calibration set")
    return out


def quantize_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, root: Path) -> None:
    """Section 4.2.1: weights quantized statically, activation quantizers inserted but not yet set."""
    paths = ProjectPaths(root)
    _, float_model = load_float_model(paths, dataset, model_type)
    qmodel = quantize(float_model, QuantSpec.from_params(params, bit_width))
    save_quantized(qmodel, paths.quantized(dataset, model_type, bit_width), calibrated=False)


def calibration_sets_stage(params: Mapping[str, Any], dataset: str, model_type: str, root: Path) -> dict[str, Any]:
    """Row indices of every calibration scheme (one common size), plus their class histograms."""
    paths = ProjectPaths(root)
    settings = calibration_params(params)
    train = load_split(paths.tokenized(dataset), "train")
    config, float_model = load_float_model(paths, dataset, model_type)
    predicted = None
    if NEEDS_PREDICTIONS & set(settings["schemes"]):
        predicted = score_split(float_scorer(float_model), train).argmax(axis=1)
    rows, summary = build_calibration_sets(train.labels, config.num_classes, settings["fraction"], settings["schemes"], get_seed(params), predicted)
    if predicted is not None:
        summary["float_train_accuracy_for_pseudo_labels"] = round(float((predicted == train.labels).mean()), 6)
    out = paths.calibration_sets(dataset, model_type)
    save_arrays(out / "rows.npz", **{name: r.astype(np.int64) for name, r in rows.items()})
    write_json(out / "summary.json", summary)
    return summary


def _scheme_rows(paths: ProjectPaths, dataset: str, model_type: str, scheme: str) -> np.ndarray:
    check_scheme(scheme)
    rows_file = paths.calibration_sets(dataset, model_type) / "rows.npz"
    sets = load_arrays(rows_file)
    if scheme not in sets:
        raise DataError(f"{rows_file}: no rows for scheme {scheme!r}; add it to calibration.schemes and rerun calibration_sets")
    return sets[scheme]


def gpfq_rows(rows: np.ndarray, documents: int | None) -> np.ndarray:
    """The GPFQ subset of a calibration set: ``documents`` rows evenly spaced over it (all rows when
    None or larger). Calibration rows are in training-split order, so the subset keeps the set's
    class composition up to rounding."""
    if documents is None or documents >= len(rows):
        return rows
    return rows[np.linspace(0, len(rows) - 1, documents).round().astype(np.int64)]


def activation_ranges_stage(params: Mapping[str, Any], dataset: str, model_type: str, scheme: str, root: Path) -> dict[str, Any]:
    """Calibration (section 4.2.2): the percentile range of every activation on the scheme's set."""
    settings = calibration_params(params)
    paths = ProjectPaths(root)
    _, float_model = load_float_model(paths, dataset, model_type)
    train = load_split(paths.tokenized(dataset), "train")
    batches = token_batches(train, settings["batch_size"], _scheme_rows(paths, dataset, model_type, scheme))
    qmodel = quantize(float_model, QuantSpec.from_params(params, OBSERVE_BIT_WIDTH))
    started = time.perf_counter()
    documents = calibrate(qmodel, batches)
    seconds = time.perf_counter() - started
    ranges = activation_ranges(qmodel)
    out = paths.activation_ranges(dataset, model_type, scheme)
    save_arrays(out / "ranges.npz", **{name: value.numpy() for name, value in ranges.items()})
    summary = {
        "dataset": dataset,
        "model_type": model_type,
        "calibration_scheme": scheme,
        "calibration_documents": documents,
        "calibrate_seconds": round(seconds, 2),
        "ranges": {name: round(float(value), 6) for name, value in ranges.items()},
    }
    write_json(out / "summary.json", summary)
    return summary


def load_activation_ranges(paths: ProjectPaths, dataset: str, model_type: str, scheme: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The ranges, their summary and the ranges file (for error messages)."""
    directory = paths.activation_ranges(dataset, model_type, scheme)
    ranges_file = directory / "ranges.npz"
    if not ranges_file.is_file():
        raise DataError(f"{ranges_file}: missing; run the activation_ranges@{dataset}-{model_type}-{scheme} stage first")
    ranges = {name: torch.from_numpy(value) for name, value in load_arrays(ranges_file).items()}
    return ranges, read_json(directory / "summary.json"), ranges_file


def calibrate_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, scheme: str, root: Path) -> dict[str, Any]:
    """The scheme's activation ranges at this bit width (4.2.2), GPFQ (4.2.3), then the test evaluation."""
    settings = calibration_params(params)
    paths = ProjectPaths(root)
    config, float_model = load_float_model(paths, dataset, model_type)
    spec = QuantSpec.from_params(params, bit_width)
    qmodel = load_quantized(paths.quantized(dataset, model_type, bit_width), config, spec, calibrated=False)
    rows = _scheme_rows(paths, dataset, model_type, scheme)
    train = load_split(paths.tokenized(dataset), "train")
    batches = token_batches(train, settings["batch_size"], rows)
    error_batches = batches[:: max(1, len(batches) // max(settings["error_batches"], 1))][: settings["error_batches"]]
    refine = gpfq_rows(rows, settings["gpfq_documents"])
    ranges, observed, ranges_file = load_activation_ranges(paths, dataset, model_type, scheme)
    set_activation_ranges(qmodel, ranges, str(ranges_file))
    documents = observed["calibration_documents"]

    timings: dict[str, float] = {}  # calibration itself ran once per scheme: activation_ranges/summary.json
    error_before = final_layer_output_error(qmodel, float_model, error_batches) if error_batches else None
    started = time.perf_counter()
    gpfq = apply_gpfq(qmodel, token_batches(train, settings["gpfq_batch_size"], refine), settings["final_layer_algorithm"])
    timings["gpfq_seconds"] = time.perf_counter() - started
    error_after = final_layer_output_error(qmodel, float_model, error_batches) if error_batches else None
    save_quantized(qmodel, paths.calibrated(dataset, model_type, bit_width, scheme))

    test = load_split(paths.tokenized(dataset), "test")
    check_vocabulary_fits(config, test, str(paths.tokenized(dataset) / "test.npz"))
    classes = read_json(paths.tokenized(dataset) / "classes.json")
    started = time.perf_counter()
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    result = evaluate(score_split(quant_scorer(qmodel), test, batch_size), test.labels)
    timings["evaluate_seconds"] = time.perf_counter() - started
    float_accuracy = read_json(paths.evaluate_metrics(dataset, model_type))["accuracy"]

    metrics = result.metrics(classes)
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "calibration_documents": documents,
            "float_accuracy": float_accuracy,
            "accuracy_drop": round(float_accuracy - metrics["accuracy"], 6),
            "final_layer_algorithm": gpfq["algorithm"],
            "gpfq_documents": len(refine),
            "gpfq_changed_weight_fraction": round(gpfq["changed_weight_fraction"], 6),
            "final_layer_error_before_gpfq": None if error_before is None else round(error_before, 6),
            "final_layer_error_after_gpfq": None if error_after is None else round(error_after, 6),
            "hidden_state": {k: round(v, 6) for k, v in hidden_state_stats(qmodel, token_batches(test, batch_size, np.arange(min(512, len(test))))).items()},
            **{k: round(v, 2) for k, v in timings.items()},
        }
    )
    write_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme), metrics)
    return metrics
