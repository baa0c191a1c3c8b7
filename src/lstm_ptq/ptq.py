"""Stage bodies of the PTQ grid (paper Figure 1): quantize per bit width, calibration sets per model,
calibrate + GPFQ + evaluate per (bit width, calibration scheme)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

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
    apply_gpfq,
    calibrate,
    check_algorithm,
    final_layer_output_error,
    hidden_state_stats,
    load_quantized,
    quant_scorer,
    quantize,
    save_quantized,
    token_batches,
)


class ProjectPaths(_BasePaths):
    """Where the PTQ stages read and write (extends the float stages' layout)."""

    def quantized(self, dataset: str, model_type: str, bit_width: int) -> Path:
        """The quantized model before calibration (output of ``quantize``)."""
        return self.root / "models" / "quantized" / dataset / model_type / f"w{bit_width}" / "model.pt"

    def calibration_sets(self, dataset: str, model_type: str) -> Path:
        return self.root / "data" / "calibration" / dataset / model_type

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
    }
    if not 0.0 < out["fraction"] <= 1.0:
        raise ParamError(f"{where}.fraction: {out['fraction']!r} is not in (0, 1]")
    if out["batch_size"] < 1 or out["error_batches"] < 0:
        raise ParamError(f"{where}: batch_size must be >= 1 and error_batches >= 0")
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


def calibrate_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, scheme: str, root: Path) -> dict[str, Any]:
    """Calibration (4.2.2) and GPFQ (4.2.3) on the scheme's calibration set, then the test evaluation."""
    settings = calibration_params(params)
    check_scheme(scheme)
    paths = ProjectPaths(root)
    config, float_model = load_float_model(paths, dataset, model_type)
    spec = QuantSpec.from_params(params, bit_width)
    qmodel = load_quantized(paths.quantized(dataset, model_type, bit_width), config, spec, calibrated=False)

    sets = load_arrays(paths.calibration_sets(dataset, model_type) / "rows.npz")
    if scheme not in sets:
        raise DataError(f"{paths.calibration_sets(dataset, model_type) / 'rows.npz'}: no rows for scheme {scheme!r}; rerun calibration_sets")
    train = load_split(paths.tokenized(dataset), "train")
    batches = token_batches(train, settings["batch_size"], sets[scheme])
    error_batches = batches[:: max(1, len(batches) // max(settings["error_batches"], 1))][: settings["error_batches"]]

    timings: dict[str, float] = {}
    started = time.perf_counter()
    documents = calibrate(qmodel, batches)
    timings["calibrate_seconds"] = time.perf_counter() - started
    error_before = final_layer_output_error(qmodel, float_model, error_batches) if error_batches else None
    started = time.perf_counter()
    gpfq = apply_gpfq(qmodel, batches, settings["final_layer_algorithm"])
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
            "gpfq_changed_weight_fraction": round(gpfq["changed_weight_fraction"], 6),
            "final_layer_error_before_gpfq": None if error_before is None else round(error_before, 6),
            "final_layer_error_after_gpfq": None if error_after is None else round(error_after, 6),
            "hidden_state": {k: round(v, 6) for k, v in hidden_state_stats(qmodel, token_batches(test, batch_size, np.arange(min(512, len(test))))).items()},
            **{k: round(v, 2) for k, v in timings.items()},
        }
    )
    write_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme), metrics)
    return metrics
