"""PTQ grid stages (paper Figure 1): ``quantize`` per bit width, ``activation_ranges`` per scheme (on the
sets of :mod:`.calibration_sets`), ``calibrate`` (ranges + GPFQ + test evaluation) per (bit width,
scheme) cell, and ``ptq_report`` (metrics/ptq_grid.csv, Figures 6, 7, 8, 11).

The calibrate cell is split into :func:`observe_activation_ranges`, :func:`refine_cell` and
:func:`evaluate_cell`, which the benchmarks (scripts/bench_*.py) call on in-memory models."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis import final_layer_grams, final_layer_output_error, hidden_state_stats
from ..artifacts import load_arrays, read_json, readable_path, require_array, save_arrays, write_json
from ..calibration import check_scheme
from ..datasets import dataset_spec
from ..errors import DataError
from ..evaluation import Evaluation, evaluate, save_test_scores, score_split
from ..models import ModelConfig, check_vocabulary_fits, load_float_model
from ..paths import ProjectPaths
from ..preprocess import EncodedSplit, evenly_spaced, load_split
from ..quantization import (
    QuantSpec,
    activation_ranges,
    apply_gpfq,
    calibrate,
    load_quantized,
    quant_scorer,
    quantize,
    save_quantized,
    set_activation_ranges,
    token_batches,
    using_fast_lstm,
)
from ..quantization.activations import Batch
from ..settings import CalibrationSettings, EvaluateSettings, FinalLayerSettings, QuantizationSettings
from . import log
from .calibration_sets import PREDICTED_LABELS

# Activation ranges do not depend on the bit width (the statistics come from a float pass), so they
# are observed once per scheme at this bit width and divided by each cell's integer range.
OBSERVE_BIT_WIDTH = 8
HIDDEN_STATE_DOCUMENTS = 512  # test documents the hidden-state statistics are measured on


def quantize_stage(dataset: str, model_type: str, bit_width: int, quantization: QuantizationSettings, paths: ProjectPaths) -> None:
    """Section 4.2.1: weights quantized statically, activation quantizers inserted but not yet set."""
    _, float_model = load_float_model(paths, dataset, model_type)
    qmodel = quantize(float_model, quantization.spec(bit_width))
    save_quantized(qmodel, paths.quantized(dataset, model_type, bit_width), calibrated=False)


def decoder_feed(paths: ProjectPaths, dataset: str, model_type: str, train: EncodedSplit, feeding: str) -> np.ndarray | None:
    """The label each training document is fed to the generative decoder with during calibration and
    GPFQ (``calibration.decoder_feeding``), or None: every label (``all_labels``, and the discriminative model)."""
    if model_type != "generative" or feeding == "all_labels":
        return None
    if feeding == "true_label":
        return train.labels
    rows_file = paths.calibration_rows(dataset, model_type)
    arrays = load_arrays(rows_file)
    if PREDICTED_LABELS not in arrays:
        raise DataError(f"{rows_file}: no predicted labels; rerun calibration_sets@{dataset}-{model_type} with calibration.decoder_feeding: {feeding}")
    predicted = require_array(arrays, rows_file, PREDICTED_LABELS, ndim=1, kinds="iu", low=0, high=dataset_spec(dataset).num_classes)
    if len(predicted) != len(train):
        raise DataError(f"{rows_file}: {len(predicted)} predicted labels for {len(train)} training documents")
    return predicted


def scheme_rows(paths: ProjectPaths, dataset: str, model_type: str, scheme: str, train_rows: int) -> np.ndarray:
    """The training rows of one scheme's calibration set (output of ``calibration_sets``): distinct
    positions in the training split of ``train_rows`` documents."""
    check_scheme(scheme)
    rows_file = paths.calibration_rows(dataset, model_type)
    sets = load_arrays(rows_file)
    if scheme not in sets:
        raise DataError(f"{rows_file}: no rows for scheme {scheme!r}; add it to grid.calibration_schemes and rerun calibration_sets")
    rows = require_array(sets, rows_file, scheme, ndim=1, kinds="iu", low=0, high=train_rows)
    if len(np.unique(rows)) != len(rows):
        raise DataError(f"{rows_file}: scheme {scheme!r} lists a training row twice; rerun calibration_sets")
    return rows


def observe_activation_ranges(float_model: torch.nn.Module, spec: QuantSpec, batches: list) -> tuple[dict[str, torch.Tensor], int]:
    """Calibration (section 4.2.2): quantize at ``spec`` and observe every activation's percentile
    range on ``batches``; returns the ranges and the number of documents seen."""
    qmodel = quantize(float_model, spec)
    documents = calibrate(qmodel, batches)
    return activation_ranges(qmodel), documents


def calibration_batches(
    paths: ProjectPaths, dataset: str, model_type: str, scheme: str, calibration: CalibrationSettings
) -> tuple[torch.nn.Module, list[Batch]]:
    """The float model and the scheme's calibration batches (decoder labels included), as calibration reads them."""
    _, float_model = load_float_model(paths, dataset, model_type)
    train = load_split(paths.tokenized(dataset), "train", dataset_spec(dataset).num_classes)
    feed = decoder_feed(paths, dataset, model_type, train, calibration.decoder_feeding)
    return float_model, token_batches(train, calibration.batch_size, scheme_rows(paths, dataset, model_type, scheme, len(train)), feed)


def activation_ranges_stage(
    dataset: str, model_type: str, scheme: str, quantization: QuantizationSettings, calibration: CalibrationSettings, paths: ProjectPaths
) -> dict[str, Any]:
    """The percentile range of every activation on the scheme's set, shared by every bit width."""
    float_model, batches = calibration_batches(paths, dataset, model_type, scheme, calibration)
    started = time.perf_counter()
    ranges, documents = observe_activation_ranges(float_model, quantization.spec(OBSERVE_BIT_WIDTH), batches)
    seconds = time.perf_counter() - started
    save_arrays(paths.activation_ranges_file(dataset, model_type, scheme), **{name: value.cpu().numpy() for name, value in ranges.items()})
    summary = {
        "dataset": dataset,
        "model_type": model_type,
        "calibration_scheme": scheme,
        "calibration_documents": documents,
        "decoder_feeding": calibration.decoder_feeding if model_type == "generative" else None,
        "ranges": {name: round(float(value), 6) for name, value in ranges.items()},
    }
    write_json(paths.activation_ranges_summary(dataset, model_type, scheme), summary)
    log("activation_ranges", f"calibrate {seconds:.1f} s ({documents} documents)")
    return summary


def load_activation_ranges(paths: ProjectPaths, dataset: str, model_type: str, scheme: str) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """The ranges, their summary and the ranges file (for error messages)."""
    ranges_file = paths.activation_ranges_file(dataset, model_type, scheme)
    if not readable_path(ranges_file).is_file():
        raise DataError(f"{ranges_file}: missing; run the activation_ranges@{dataset}-{model_type}-{scheme} stage first")
    ranges = {name: torch.as_tensor(value) for name, value in load_arrays(ranges_file).items()}
    return ranges, read_json(paths.activation_ranges_summary(dataset, model_type, scheme)), ranges_file


@dataclass(frozen=True)
class CalibrateCell:
    """A calibrate cell as :func:`calibrate_stage` sets it up before GPFQ (also the benchmarks' cell)."""

    paths: ProjectPaths
    dataset: str
    model_type: str
    bit_width: int
    config: ModelConfig
    spec: QuantSpec
    float_model: torch.nn.Module
    train: EncodedSplit
    rows: np.ndarray  # the scheme's calibration rows of ``train``
    ranges: dict[str, torch.Tensor]
    ranges_summary: dict[str, Any]
    ranges_file: Path
    feed: np.ndarray | None  # decoder_feed's labels

    def quantized_model(self) -> torch.nn.Module:
        """A fresh copy of the bit width's quantized model with the scheme's activation ranges set."""
        qmodel = load_quantized(self.paths.quantized(self.dataset, self.model_type, self.bit_width), self.config, self.spec, calibrated=False)
        set_activation_ranges(qmodel, self.ranges, str(self.ranges_file))
        return qmodel


def calibrate_cell(
    paths: ProjectPaths, dataset: str, model_type: str, bit_width: int, scheme: str, quantization: QuantizationSettings, calibration: CalibrationSettings
) -> CalibrateCell:
    """Everything a calibrate cell reads before GPFQ: the float model, the spec, the training split, the
    scheme's rows and activation ranges (calibration itself ran once per scheme), the decoder feeding."""
    config, float_model = load_float_model(paths, dataset, model_type)
    train = load_split(paths.tokenized(dataset), "train", dataset_spec(dataset).num_classes)
    rows = scheme_rows(paths, dataset, model_type, scheme, len(train))
    ranges, summary, ranges_file = load_activation_ranges(paths, dataset, model_type, scheme)
    feed = decoder_feed(paths, dataset, model_type, train, calibration.decoder_feeding)
    return CalibrateCell(
        paths, dataset, model_type, bit_width, config, quantization.spec(bit_width), float_model, train, rows, ranges, summary, ranges_file, feed
    )


@dataclass(frozen=True)
class Refinement:
    """What GPFQ (section 4.2.3) did to one cell's final layer."""

    gpfq: dict[str, Any]  # apply_gpfq's report (algorithm, changed_weight_fraction...)
    documents: int  # calibration documents GPFQ ran on
    error_before: float | None  # final-layer output error vs the float model, on the error batches
    error_after: float | None
    seconds: float


def refine_cell(
    qmodel: torch.nn.Module,
    float_model: torch.nn.Module,
    train: EncodedSplit,
    rows: np.ndarray,
    calibration: CalibrationSettings,
    final_layer: FinalLayerSettings,
    feed: np.ndarray | None = None,
) -> Refinement:
    """GPFQ (or the configured final-layer algorithm) on an evenly spaced ``final_layer.documents`` subset
    of the calibration ``rows``, with the final layer's output error measured before and after on
    ``final_layer.error_batches`` calibration batches spread over the set; ``feed``: :func:`decoder_feed`."""
    batches = token_batches(train, calibration.batch_size, rows, feed)
    error_batches = batches[:: max(1, len(batches) // max(final_layer.error_batches, 1))][: final_layer.error_batches]
    refine = rows[evenly_spaced(len(rows), final_layer.documents)]
    # GPFQ changes the final layer's weights only: one fast LSTM serves the whole refinement, and the final
    # layer's input rows (the Gram matrices of the error) are the same before and after it
    with using_fast_lstm(qmodel):
        grams = final_layer_grams(qmodel, float_model, error_batches) if error_batches else None
        error_before = final_layer_output_error(qmodel, float_model, grams) if grams is not None else None
        started = time.perf_counter()
        gpfq = apply_gpfq(qmodel, token_batches(train, final_layer.batch_size, refine, feed), final_layer.algorithm)
        seconds = time.perf_counter() - started
        error_after = final_layer_output_error(qmodel, float_model, grams) if grams is not None else None
    return Refinement(gpfq, len(refine), error_before, error_after, seconds)


def evaluate_cell(qmodel: torch.nn.Module, test: EncodedSplit, batch_size: int) -> tuple[Evaluation, dict[str, float], float]:
    """The calibrated model on the test split: its evaluation, hidden-state statistics on the first
    test documents, and the evaluation's wall time."""
    started = time.perf_counter()
    with using_fast_lstm(qmodel):  # bit-identical to Brevitas' QuantLSTM (docs/quantization.md)
        result = evaluate(score_split(quant_scorer(qmodel), test, batch_size), test.labels)
        seconds = time.perf_counter() - started
        hidden = hidden_state_stats(qmodel, token_batches(test, batch_size, np.arange(min(HIDDEN_STATE_DOCUMENTS, len(test)))))
    return result, hidden, seconds


def calibrate_stage(
    dataset: str,
    model_type: str,
    bit_width: int,
    scheme: str,
    quantization: QuantizationSettings,
    calibration: CalibrationSettings,
    final_layer: FinalLayerSettings,
    evaluate_settings: EvaluateSettings,
    paths: ProjectPaths,
) -> dict[str, Any]:
    """The scheme's activation ranges at this bit width (4.2.2), GPFQ (4.2.3), then the test evaluation."""
    cell = calibrate_cell(paths, dataset, model_type, bit_width, scheme, quantization, calibration)
    qmodel = cell.quantized_model()
    refinement = refine_cell(qmodel, cell.float_model, cell.train, cell.rows, calibration, final_layer, cell.feed)
    save_quantized(qmodel, paths.calibrated(dataset, model_type, bit_width, scheme))

    test = load_split(paths.tokenized(dataset), "test", dataset_spec(dataset).num_classes)
    check_vocabulary_fits(cell.config, test, str(paths.tokenized(dataset) / "test.npz"))
    classes = read_json(paths.tokenized(dataset) / "classes.json")
    result, hidden, evaluate_seconds = evaluate_cell(qmodel, test, evaluate_settings.batch_size)
    float_accuracy = read_json(paths.evaluate_metrics(dataset, model_type))["accuracy"]

    metrics = result.metrics(classes)
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "cell_state_bit_width": cell.spec.cell_state_bits,
            "gate_bit_width": cell.spec.gate_bits,
            "decoder_feeding": calibration.decoder_feeding if model_type == "generative" else None,
            "calibration_documents": cell.ranges_summary["calibration_documents"],
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
    save_test_scores(paths.calibrated_test_scores(dataset, model_type, bit_width, scheme), result)
    write_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme), metrics)
    log("calibrate", f"gpfq {refinement.seconds:.1f} s, evaluate {evaluate_seconds:.1f} s")
    return metrics
