"""Noise stages after the float ones: ``noise_quantized`` (a calibrated model vs noise level, paper
section 5.5, Figure 10), ``noise_report`` (metrics/noise_grid.csv, Figures 9 and 10), and the
noise-trained variant of section 7: ``noise_train_data`` and ``figure16``.

The noise-trained model lives in a variant project tree (``ProjectPaths.noise_trained()``) laid out
like the main one, so the pipeline's own stage scripts train, quantize, calibrate and evaluate it with
``--root variants/noise_trained``; :func:`build_noise_trained_data` builds that tree's data.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from ..artifacts import save_arrays, staged_output, write_json
from ..datasets import dataset_spec, read_release_csv
from ..models import check_vocabulary_fits, load_float_model
from ..noise import CHAR_VOCAB_FILE, level_name, load_char_vocabulary, load_noisy_split, noise_model
from ..noise_training import SEED_OFFSET, corrupt_split
from ..paths import ProjectPaths
from ..preprocess import evenly_spaced, load_split, load_vocabulary
from ..quantization import load_quantized, quant_scorer, using_fast_lstm
from ..robustness import noise_curve, save_noise_predictions
from ..settings import EvaluateSettings, NoiseQuantizedSettings, NoiseSettings, NoiseTrainingSettings, QuantizationSettings, TextSettings
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


def build_noise_trained_data(dataset: str, settings: NoiseTrainingSettings, noise: NoiseSettings, text: TextSettings, root: Path) -> dict[str, Any]:
    """The variant tree's ``data/tokenized/<dataset>`` (training and validation splits corrupted once at
    ``noise_training.level``, the main tree's clean test split and vocabulary) and
    ``data/noisy/<dataset>/<noise_model>`` (the main tree's noisy test sets)."""
    main = ProjectPaths(root)
    variant = main.noise_trained()
    model = noise_model(settings.noise_model)
    noisy_dir = main.noisy(dataset, settings.noise_model)
    char_vocabulary = load_char_vocabulary(noisy_dir / CHAR_VOCAB_FILE)
    vocabulary = load_vocabulary(main.tokenized(dataset))
    raw_train = main.raw(dataset) / "train.csv"
    docs = read_release_csv(raw_train, dataset_spec(dataset).num_classes)
    seed = noise.seed + SEED_OFFSET

    stats: dict[str, Any] = {"dataset": dataset, "noise_model": model.name, "level": settings.level, "seed": seed, "splits": {}}
    with staged_output(variant.tokenized(dataset)) as staged:
        for split_name in ("train", "valid"):
            clean = load_split(main.tokenized(dataset), split_name, dataset_spec(dataset).num_classes)
            where = main.tokenized(dataset) / f"{split_name}.npz"
            noisy, stats["splits"][split_name] = corrupt_split(
                clean, docs, settings.level, model, char_vocabulary, seed, vocabulary, text.lowercase, text.max_length, where, raw_train
            )
            save_arrays(staged / f"{split_name}.npz", tokens=noisy.tokens, lengths=noisy.lengths, labels=noisy.labels, source_rows=noisy.source_rows)
        for name in ("test.npz", "vocab.json", "classes.json"):  # the clean test split and the main vocabulary
            shutil.copy2(main.tokenized(dataset) / name, staged / name)
        write_json(staged / "noise_training.json", stats)

    with staged_output(variant.noisy(dataset, settings.noise_model)) as staged:
        shutil.rmtree(staged)
        shutil.copytree(noisy_dir, staged)
    return stats
