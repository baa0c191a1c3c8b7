"""PTQ grid stages (paper Figure 1): ``quantize`` per bit width, ``calibration_sets`` per model,
``activation_ranges`` per scheme, ``calibrate`` (ranges + GPFQ + test evaluation) per (bit width,
scheme) cell, and ``ptq_report`` (metrics/ptq_grid.csv, Figures 6, 7, 8, 11).

The calibrate cell is split into :func:`observe_activation_ranges`, :func:`refine_cell` and
:func:`evaluate_cell`, which the benchmarks (scripts/bench_*.py) call on in-memory models."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis import final_layer_output_error, hidden_state_stats
from ..artifacts import load_arrays, read_json, save_arrays, write_frame, write_json
from ..calibration import build_calibration_sets, check_scheme, needs_predictions
from ..config import get_seed, get_typed, section
from ..errors import DataError, ParamError
from ..evaluation import Evaluation, evaluate, float_scorer, score_split
from ..models import check_vocabulary_fits, load_float_model
from ..paths import ProjectPaths
from ..plots import write_ptq_figures
from ..preprocess import EncodedSplit, evenly_spaced, load_split
from ..quantization import (
    QuantSpec,
    activation_ranges,
    apply_gpfq,
    calibrate,
    check_algorithm,
    load_quantized,
    quant_scorer,
    quantize,
    save_quantized,
    set_activation_ranges,
    token_batches,
)
from . import log

# Activation ranges do not depend on the bit width (the statistics come from a float pass), so they
# are observed once per scheme at this bit width and divided by each cell's integer range.
OBSERVE_BIT_WIDTH = 8
HIDDEN_STATE_DOCUMENTS = 512  # test documents the hidden-state statistics are measured on


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
    if needs_predictions(settings["schemes"]):
        predicted = score_split(float_scorer(float_model), train).argmax(axis=1)
    rows, summary = build_calibration_sets(train.labels, config.num_classes, settings["fraction"], settings["schemes"], get_seed(params), predicted)
    if predicted is not None:
        summary["float_train_accuracy_for_pseudo_labels"] = round(float((predicted == train.labels).mean()), 6)
    save_arrays(paths.calibration_rows(dataset, model_type), **{name: r.astype(np.int64) for name, r in rows.items()})
    write_json(paths.calibration_summary(dataset, model_type), summary)
    return summary


def scheme_rows(paths: ProjectPaths, dataset: str, model_type: str, scheme: str) -> np.ndarray:
    """The training rows of one scheme's calibration set (output of ``calibration_sets``)."""
    check_scheme(scheme)
    rows_file = paths.calibration_rows(dataset, model_type)
    sets = load_arrays(rows_file)
    if scheme not in sets:
        raise DataError(f"{rows_file}: no rows for scheme {scheme!r}; add it to calibration.schemes and rerun calibration_sets")
    return sets[scheme]


def observe_activation_ranges(float_model: torch.nn.Module, spec: QuantSpec, batches: list) -> tuple[dict[str, torch.Tensor], int]:
    """Calibration (section 4.2.2): quantize at ``spec`` and observe every activation's percentile
    range on ``batches``; returns the ranges and the number of documents seen."""
    qmodel = quantize(float_model, spec)
    documents = calibrate(qmodel, batches)
    return activation_ranges(qmodel), documents


def activation_ranges_stage(params: Mapping[str, Any], dataset: str, model_type: str, scheme: str, root: Path) -> dict[str, Any]:
    """The percentile range of every activation on the scheme's set, shared by every bit width."""
    settings = calibration_params(params)
    paths = ProjectPaths(root)
    _, float_model = load_float_model(paths, dataset, model_type)
    train = load_split(paths.tokenized(dataset), "train")
    batches = token_batches(train, settings["batch_size"], scheme_rows(paths, dataset, model_type, scheme))
    started = time.perf_counter()
    ranges, documents = observe_activation_ranges(float_model, QuantSpec.from_params(params, OBSERVE_BIT_WIDTH), batches)
    seconds = time.perf_counter() - started
    save_arrays(paths.activation_ranges_file(dataset, model_type, scheme), **{name: value.numpy() for name, value in ranges.items()})
    summary = {
        "dataset": dataset,
        "model_type": model_type,
        "calibration_scheme": scheme,
        "calibration_documents": documents,
        "ranges": {name: round(float(value), 6) for name, value in ranges.items()},
    }
    write_json(paths.activation_ranges_summary(dataset, model_type, scheme), summary)
    log("activation_ranges", f"calibrate {seconds:.1f} s ({documents} documents)")
    return summary


def load_activation_ranges(paths: ProjectPaths, dataset: str, model_type: str, scheme: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The ranges, their summary and the ranges file (for error messages)."""
    ranges_file = paths.activation_ranges_file(dataset, model_type, scheme)
    if not ranges_file.is_file():
        raise DataError(f"{ranges_file}: missing; run the activation_ranges@{dataset}-{model_type}-{scheme} stage first")
    ranges = {name: torch.from_numpy(value) for name, value in load_arrays(ranges_file).items()}
    return ranges, read_json(paths.activation_ranges_summary(dataset, model_type, scheme)), ranges_file


@dataclass(frozen=True)
class Refinement:
    """What GPFQ (section 4.2.3) did to one cell's final layer."""

    gpfq: dict[str, Any]  # apply_gpfq's report (algorithm, changed_weight_fraction...)
    documents: int  # calibration documents GPFQ ran on
    error_before: float | None  # final-layer output error vs the float model, on the error batches
    error_after: float | None
    seconds: float


def refine_cell(qmodel: torch.nn.Module, float_model: torch.nn.Module, train: EncodedSplit, rows: np.ndarray, settings: Mapping[str, Any]) -> Refinement:
    """GPFQ (or the configured final-layer algorithm) on an evenly spaced ``gpfq_documents`` subset of
    the calibration ``rows``, with the final layer's output error measured before and after on
    ``error_batches`` batches spread over the calibration set. ``settings`` is :func:`calibration_params`."""
    batches = token_batches(train, settings["batch_size"], rows)
    error_batches = batches[:: max(1, len(batches) // max(settings["error_batches"], 1))][: settings["error_batches"]]
    refine = rows[evenly_spaced(len(rows), settings["gpfq_documents"])]
    error_before = final_layer_output_error(qmodel, float_model, error_batches) if error_batches else None
    started = time.perf_counter()
    gpfq = apply_gpfq(qmodel, token_batches(train, settings["gpfq_batch_size"], refine), settings["final_layer_algorithm"])
    seconds = time.perf_counter() - started
    error_after = final_layer_output_error(qmodel, float_model, error_batches) if error_batches else None
    return Refinement(gpfq, len(refine), error_before, error_after, seconds)


def evaluate_cell(qmodel: torch.nn.Module, test: EncodedSplit, batch_size: int) -> tuple[Evaluation, dict[str, float], float]:
    """The calibrated model on the test split: its evaluation, hidden-state statistics on the first
    test documents, and the evaluation's wall time."""
    started = time.perf_counter()
    result = evaluate(score_split(quant_scorer(qmodel), test, batch_size), test.labels)
    seconds = time.perf_counter() - started
    hidden = hidden_state_stats(qmodel, token_batches(test, batch_size, np.arange(min(HIDDEN_STATE_DOCUMENTS, len(test)))))
    return result, hidden, seconds


def calibrate_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, scheme: str, root: Path) -> dict[str, Any]:
    """The scheme's activation ranges at this bit width (4.2.2), GPFQ (4.2.3), then the test evaluation."""
    settings = calibration_params(params)
    paths = ProjectPaths(root)
    config, float_model = load_float_model(paths, dataset, model_type)
    spec = QuantSpec.from_params(params, bit_width)
    qmodel = load_quantized(paths.quantized(dataset, model_type, bit_width), config, spec, calibrated=False)
    rows = scheme_rows(paths, dataset, model_type, scheme)
    train = load_split(paths.tokenized(dataset), "train")
    ranges, observed, ranges_file = load_activation_ranges(paths, dataset, model_type, scheme)
    set_activation_ranges(qmodel, ranges, str(ranges_file))

    # calibration itself ran once per scheme: activation_ranges/summary.json
    refinement = refine_cell(qmodel, float_model, train, rows, settings)
    save_quantized(qmodel, paths.calibrated(dataset, model_type, bit_width, scheme))

    test = load_split(paths.tokenized(dataset), "test")
    check_vocabulary_fits(config, test, str(paths.tokenized(dataset) / "test.npz"))
    classes = read_json(paths.tokenized(dataset) / "classes.json")
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    result, hidden, evaluate_seconds = evaluate_cell(qmodel, test, batch_size)
    float_accuracy = read_json(paths.evaluate_metrics(dataset, model_type))["accuracy"]

    metrics = result.metrics(classes)
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "calibration_documents": observed["calibration_documents"],
            "float_accuracy": float_accuracy,
            "accuracy_drop": round(float_accuracy - metrics["accuracy"], 6),
            "final_layer_algorithm": refinement.gpfq["algorithm"],
            "gpfq_documents": refinement.documents,
            "gpfq_changed_weight_fraction": round(refinement.gpfq["changed_weight_fraction"], 6),
            "final_layer_error_before_gpfq": None if refinement.error_before is None else round(refinement.error_before, 6),
            "final_layer_error_after_gpfq": None if refinement.error_after is None else round(refinement.error_after, 6),
            "hidden_state": {k: round(v, 6) for k, v in hidden.items()},
        }
    )
    write_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme), metrics)
    log("calibrate", f"gpfq {refinement.seconds:.1f} s, evaluate {evaluate_seconds:.1f} s")
    return metrics


GRID_COLUMNS = [
    "dataset", "model_type", "bit_width", "calibration_scheme", "accuracy", "float_accuracy", "accuracy_drop",
    "mean_loss", "calibration_documents", "final_layer_algorithm", "gpfq_changed_weight_fraction",
    "final_layer_error_before_gpfq", "final_layer_error_after_gpfq", "hidden_zero_fraction",
]


def collect_grid(paths: ProjectPaths, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> pd.DataFrame:
    """Every calibrate cell's metrics as one long frame (columns :data:`GRID_COLUMNS`)."""
    records = []
    for dataset in datasets:
        for model_type in model_types:
            for bit_width in bit_widths:
                for scheme in schemes:
                    metrics = read_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme))
                    record = {key: metrics.get(key) for key in GRID_COLUMNS}
                    record["hidden_zero_fraction"] = metrics.get("hidden_state", {}).get("zero_h_fraction")
                    records.append(record)
    return pd.DataFrame(records, columns=GRID_COLUMNS, dtype=object)


def ptq_report_stage(root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> pd.DataFrame:
    paths = ProjectPaths(root)
    grid = collect_grid(paths, datasets, model_types, bit_widths, schemes)
    write_frame(paths.ptq_grid(), grid)
    write_ptq_figures(grid, paths.ptq_plots(), datasets, model_types, bit_widths, schemes)
    return grid
