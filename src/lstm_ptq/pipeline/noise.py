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

from ..artifacts import write_json
from ..datasets import dataset_spec
from ..models import check_vocabulary_fits, load_float_model
from ..noise import level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import evenly_spaced
from ..quantization import load_quantized, quant_scorer, using_fast_lstm
from ..robustness import noise_curve, save_noise_predictions
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

    test_rows = 0
    for level in noise.levels:
        split = load_noisy_split(noisy_dir, level, dataset_spec(dataset).num_classes)
        check_vocabulary_fits(config, split, str(noisy_dir / f"{level_name(level)}.npz"))
        test_rows = len(split)
    documents = evenly_spaced(test_rows, settings.test_documents)
    started = time.perf_counter()
    with using_fast_lstm(qmodel):  # bit-identical to Brevitas' QuantLSTM (docs/quantization.md)
        rows, predictions = noise_curve(scorer, noisy_dir, noise.levels, batch_size, dataset_spec(dataset).num_classes, documents)
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
    log("noise_quantized", f"evaluate {time.perf_counter() - started:.1f} s ({len(noise.levels)} levels x {len(documents)} documents)")
    return metrics
