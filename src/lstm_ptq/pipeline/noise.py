"""Noise stages after the float ones: ``noise_quantized`` (a calibrated model vs noise level, paper
section 5.5, Figure 10), ``noise_report`` (metrics/noise_grid.csv, Figures 9 and 10), and ``figure16``
of the noise-trained variant (section 7).

The noise-trained model lives in a variant project tree (``ProjectPaths.noise_trained()``) laid out
like the main one, so the pipeline's own stage scripts train, quantize, calibrate and evaluate it with
``--root variants/noise_trained``; :func:`lstm_ptq.pipeline.data.build_noise_trained_data` builds that
tree's data.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..artifacts import write_json
from ..datasets import dataset_spec
from ..evaluation import load_test_scores
from ..models import check_vocabulary_fits, load_float_model
from ..noise import level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import EncodedSplit, evenly_spaced
from ..quantization import load_quantized, quant_scorer, using_fast_lstm
from ..robustness import NoisePredictions, noise_curve, save_noise_predictions
from ..settings import EvaluateSettings, NoiseQuantizedSettings, NoiseSettings, QuantizationSettings
from . import log


def quantized_noise_stage(
    dataset: str,
    model_type: str,
    bit_width: int,
    scheme: str,
    noise_model_name: str,
    quantization: QuantizationSettings,
    noise: NoiseSettings,
    settings: NoiseQuantizedSettings,
    evaluate_settings: EvaluateSettings,
    paths: ProjectPaths,
) -> dict[str, Any]:
    """Accuracy of one calibrated model at every noise level (section 5.5: the same corruption as Figure 9)."""
    config, _ = load_float_model(paths, dataset, model_type)
    qmodel = load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, quantization.spec(bit_width))
    scorer = quant_scorer(qmodel)
    batch_size = evaluate_settings.batch_size
    noisy_dir = paths.noisy(dataset, noise_model_name)

    num_classes = dataset_spec(dataset).num_classes
    splits = {}
    for level in noise.levels:
        splits[level] = load_noisy_split(noisy_dir, level, num_classes)
        check_vocabulary_fits(config, splits[level], str(noisy_dir / f"{level_name(level)}.npz"))
    test_rows = len(splits[noise.levels[-1]])
    documents = evenly_spaced(test_rows, settings.test_documents)
    # Level 0 is the clean test split (noisy_test checks it token for token), which the calibrate stage
    # already scored with this model and the same fast path: its predictions are taken, not scored again.
    curve = {}
    if 0 in noise.levels:
        clean = load_test_scores(paths.calibrated_test_scores(dataset, model_type, bit_width, scheme), test_rows, num_classes)["predictions"]
        curve[0] = clean_level(0, splits[0], clean, documents)
    started = time.perf_counter()
    scored_levels = [level for level in noise.levels if level not in curve]
    if scored_levels:
        with using_fast_lstm(qmodel):  # bit-identical to Brevitas' QuantLSTM (docs/quantization.md)
            scored_rows, scored = noise_curve(scorer, noisy_dir, scored_levels, batch_size, num_classes, documents)
        curve.update({level: (row, chosen) for level, row, chosen in zip(scored_levels, scored_rows, scored.predictions)})
    rows = [curve[level][0] for level in noise.levels]
    predictions = NoisePredictions(
        np.asarray(noise.levels, dtype=np.float64), np.asarray(documents, dtype=np.int64), np.stack([curve[level][1] for level in noise.levels])
    )
    metrics: dict[str, Any] = {f"accuracy@{level_name(row['noise_level'])}": row["accuracy"] for row in rows}
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "noise_model": noise_model_name,
            "documents": int(len(documents)),
        }
    )
    save_noise_predictions(paths.quantized_noise_predictions(dataset, model_type, bit_width, scheme, noise_model_name), predictions)
    write_json(paths.quantized_noise_metrics(dataset, model_type, bit_width, scheme, noise_model_name), metrics)
    log("noise_quantized", f"evaluate {time.perf_counter() - started:.1f} s ({len(scored_levels)} of {len(rows)} levels scored x {len(documents)} documents)")
    return metrics


def clean_level(level: float, split: EncodedSplit, predictions: np.ndarray, documents: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`noise_curve`'s accuracy row and predictions at the clean level, from the cell's own clean test
    predictions (``predictions``, one per document of ``split``) on ``documents``."""
    chosen = predictions[documents].astype(np.int32)
    accuracy = float((chosen == split.labels[documents]).mean())
    return {"noise_level": level, "accuracy": round(accuracy, 6)}, chosen
