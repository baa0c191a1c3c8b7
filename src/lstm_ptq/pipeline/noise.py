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
from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..evaluation import evaluate, score_split
from ..models import check_vocabulary_fits, load_float_model
from ..noise import level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import evenly_spaced
from ..quantization import load_quantized, quant_scorer, using_fast_lstm
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
    root: Path,
) -> dict[str, Any]:
    """Accuracy of one calibrated model at every noise level (section 5.5: the same corruption as Figure 9)."""
    paths = ProjectPaths(root)
    config, _ = load_float_model(paths, dataset, model_type)
    qmodel = load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, quantization.spec(bit_width))
    scorer = quant_scorer(qmodel)
    batch_size = evaluate_settings.batch_size
    noisy_dir = paths.noisy(dataset, noise_model_name)

    metrics: dict[str, Any] = {}
    started = time.perf_counter()
    with using_fast_lstm(qmodel):  # bit-identical to Brevitas' QuantLSTM (docs/quantization.md)
        for level in noise.levels:
            split = load_noisy_split(noisy_dir, level)
            check_vocabulary_fits(config, split, str(noisy_dir / f"{level_name(level)}.npz"))
            split = split.subset(evenly_spaced(len(split), settings.test_documents))
            result = evaluate(score_split(scorer, split, batch_size), split.labels)
            metrics[f"accuracy@{level_name(level)}"] = round(result.accuracy, 6)
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "noise_model": noise_model_name,
            "documents": int(len(split)),
        }
    )
    write_json(paths.quantized_noise_metrics(dataset, model_type, bit_width, scheme, noise_model_name), metrics)
    log("noise_quantized", f"evaluate {time.perf_counter() - started:.1f} s ({len(noise.levels)} levels x {len(split)} documents)")
    return metrics
