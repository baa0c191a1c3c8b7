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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..artifacts import read_json, save_arrays, staged_output, write_frame, write_json
from ..calibration import check_scheme
from ..config import get_typed, section
from ..datasets import dataset_spec, read_release_csv
from ..errors import ParamError
from ..evaluation import evaluate, score_split
from ..models import check_vocabulary_fits, load_float_model
from ..noise import CHAR_VOCAB_FILE, NoiseParams, level_name, load_char_vocabulary, load_noisy_split, noise_model
from ..noise_training import MODEL_TYPE, SCHEME, SEED_OFFSET, NoiseTrainingParams, corrupt_split
from ..paths import ProjectPaths
from ..plots import write_figure16, write_noise_figures
from ..preprocess import evenly_spaced, load_split, load_vocabulary
from ..quantization import QuantSpec, load_quantized, quant_scorer
from . import log


@dataclass(frozen=True)
class QuantNoiseParams:
    """The ``noise_quantized`` section: which calibrate cells are evaluated on which noisy test sets.

    ``schemes`` must be calibration schemes of the grid and ``noise_models`` noise models whose test
    sets are built (``noise.models``); ``test_documents`` evenly spaced test documents are scored at
    every level (the same documents at every level), ``None`` = the whole test split."""

    schemes: tuple[str, ...]
    noise_models: tuple[str, ...]
    test_documents: int | None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "QuantNoiseParams":
        where = "noise_quantized"
        node = section(params, where)
        grid_schemes = section(params, "calibration.schemes")
        built = NoiseParams.from_params(params).models
        schemes = get_typed(node, "schemes", list, where)
        noise_models = get_typed(node, "noise_models", list, where)
        if not schemes or not noise_models:
            raise ParamError(f"{where}: schemes and noise_models must each name at least one entry")
        for i, scheme in enumerate(schemes):
            check_scheme(str(scheme))
            if scheme not in grid_schemes:
                raise ParamError(f"{where}.schemes[{i}]: {scheme!r} is not in calibration.schemes {grid_schemes!r}, so it has no calibrated models")
        for i, name in enumerate(noise_models):
            noise_model(name, f"{where}.noise_models[{i}]")
            if name not in built:
                raise ParamError(f"{where}.noise_models[{i}]: {name!r} is not in noise.models {list(built)!r}, so it has no noisy test sets")
        documents = node.get("test_documents")
        if documents is not None:
            documents = get_typed(node, "test_documents", int, where)
            if documents < 1:
                raise ParamError(f"{where}.test_documents: {documents} must be >= 1, or null for the whole test split")
        return cls(tuple(schemes), tuple(noise_models), documents)


def quantized_noise_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, scheme: str, noise_model_name: str, root: Path) -> dict[str, Any]:
    """Accuracy of one calibrated model at every noise level (section 5.5: the same corruption as Figure 9)."""
    settings = QuantNoiseParams.from_params(params)
    noise = NoiseParams.from_params(params)
    check_scheme(scheme)
    noise_model(noise_model_name, "noise_model")
    paths = ProjectPaths(root)
    config, _ = load_float_model(paths, dataset, model_type)
    qmodel = load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, QuantSpec.from_params(params, bit_width))
    scorer = quant_scorer(qmodel)
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    noisy_dir = paths.noisy(dataset, noise_model_name)

    metrics: dict[str, Any] = {}
    started = time.perf_counter()
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


NOISE_GRID_COLUMNS = ["dataset", "model_type", "precision", "calibration_scheme", "noise_model", "noise_level", "accuracy", "documents"]


def collect_noise_grid(
    paths: ProjectPaths, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], levels: Sequence[float], settings: QuantNoiseParams
) -> pd.DataFrame:
    """Long frame: float curves (``precision`` = float, on the whole test split) and quantized ones (``w<b>``)."""
    records: list[dict[str, Any]] = []
    for dataset in datasets:
        for model_type in model_types:
            for name in settings.noise_models:
                cells = [("float", "", read_json(paths.float_noise_metrics(dataset, model_type, name)))]
                for scheme in settings.schemes:
                    cells += [(f"w{b}", scheme, read_json(paths.quantized_noise_metrics(dataset, model_type, b, scheme, name))) for b in bit_widths]
                for precision, scheme, metrics in cells:
                    for level in levels:
                        records.append(
                            {
                                "dataset": dataset,
                                "model_type": model_type,
                                "precision": precision,
                                "calibration_scheme": scheme,
                                "noise_model": name,
                                "noise_level": level,
                                "accuracy": metrics[f"accuracy@{level_name(level)}"],
                                "documents": metrics["documents"],
                            }
                        )
    return pd.DataFrame(records, columns=NOISE_GRID_COLUMNS, dtype=object)


def noise_report_stage(params: Mapping[str, Any], root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int]) -> pd.DataFrame:
    settings = QuantNoiseParams.from_params(params)
    levels = NoiseParams.from_params(params).levels
    paths = ProjectPaths(root)
    grid = collect_noise_grid(paths, datasets, model_types, bit_widths, levels, settings)
    write_frame(paths.noise_grid(), grid)
    write_noise_figures(grid, paths.noise_plots(), datasets, model_types, bit_widths, levels, settings.schemes, settings.noise_models)
    return grid


def build_noise_trained_data(params: Mapping[str, Any], dataset: str, root: Path) -> dict[str, Any]:
    """The variant tree's ``data/tokenized/<dataset>`` (training and validation splits corrupted once at
    ``noise_training.level``, the main tree's clean test split and vocabulary) and
    ``data/noisy/<dataset>/<noise_model>`` (the main tree's noisy test sets)."""
    settings = NoiseTrainingParams.from_params(params)
    noise = NoiseParams.from_params(params)
    tokenize = section(params, "tokenize")
    lowercase = get_typed(tokenize, "lowercase", bool, "tokenize")
    max_length = get_typed(tokenize, "max_length", int, "tokenize")
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
            clean = load_split(main.tokenized(dataset), split_name)
            where = main.tokenized(dataset) / f"{split_name}.npz"
            noisy, stats["splits"][split_name] = corrupt_split(clean, docs, settings.level, model, char_vocabulary, seed, vocabulary, lowercase, max_length, where, raw_train)
            save_arrays(staged / f"{split_name}.npz", tokens=noisy.tokens, lengths=noisy.lengths, labels=noisy.labels, source_rows=noisy.source_rows)
        for name in ("test.npz", "vocab.json", "classes.json"):  # the clean test split and the main vocabulary
            shutil.copy2(main.tokenized(dataset) / name, staged / name)
        write_json(staged / "noise_training.json", stats)

    with staged_output(variant.noisy(dataset, settings.noise_model)) as staged:
        shutil.rmtree(staged)
        shutil.copytree(noisy_dir, staged)
    return stats


def figure16_stage(params: Mapping[str, Any], root: Path, bit_widths: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Accuracy at ``eval_level`` noise of the clean-trained and the noise-trained generative model,
    class-conditionally calibrated, per bit width (rows ``float`` included): CSV per dataset, one PNG
    and metrics/figure16.json."""
    settings = NoiseTrainingParams.from_params(params)
    key = f"accuracy@{level_name(settings.eval_level)}"
    main = ProjectPaths(root)
    trees = {"clean_trained": main, "noise_trained": main.noise_trained()}
    frames: dict[str, pd.DataFrame] = {}
    floats: dict[str, dict[str, float]] = {}
    for dataset in settings.datasets:
        records = [
            {"bit_width": bit_width, **{name: read_json(paths.quantized_noise_metrics(dataset, MODEL_TYPE, bit_width, SCHEME, settings.noise_model))[key] for name, paths in trees.items()}}
            for bit_width in sorted(bit_widths, reverse=True)
        ]
        frames[dataset] = pd.DataFrame(records, dtype=object)
        floats[dataset] = {name: read_json(paths.float_noise_metrics(dataset, MODEL_TYPE, settings.noise_model))[key] for name, paths in trees.items()}
    write_figure16(frames, floats, main.figure16_plots(), settings.level, settings.eval_level, SCHEME)
    tables = {dataset: frame.to_dict("records") + [{"bit_width": "float", **floats[dataset]}] for dataset, frame in frames.items()}
    write_json(main.figure16_metrics(), {dataset: {str(r["bit_width"]): {k: r[k] for k in trees} for r in rows} for dataset, rows in tables.items()})
    return tables
