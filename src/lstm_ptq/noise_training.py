"""A generative classifier trained with input noise, quantized and tested on noisy input (paper
section 7, Figure 16).

The noise-trained model lives in a variant project tree (``variants/noise_trained``) laid out like the
main one, so the pipeline's own stage scripts train, quantize, calibrate and evaluate it with
``--root variants/noise_trained``. This module builds that tree's data (the training and validation
splits corrupted once at the training noise level; the clean test split, vocabulary and noisy test
sets of the main tree). :func:`lstm_ptq.noise_ptq.figure16_stage` draws Figure 16 from both trees.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .artifacts import replace_directory, save_arrays, staging_directory, write_json
from .config import check_dataset, get_typed, section
from .datasets import dataset_spec, read_release_csv
from .errors import DataError, ParamError
from .noise import CHAR_VOCAB_FILE, NoiseParams, _tokenize_noisy, changed_characters, check_noise_level, corrupt_text, load_char_vocabulary, noise_model
from .paths import ProjectPaths
from .preprocess import load_split, load_vocabulary
from .text import document_text, encode_padded

VARIANT_ROOT = Path("variants") / "noise_trained"
MODEL_TYPE = "generative"  # section 7 trains the generative classifier with noise
SCHEME = "class_conditional"  # and calibrates it class-conditionally
# Training corruption draws from seed + SEED_OFFSET, so it is independent of the test corruption.
SEED_OFFSET = 1


@dataclass(frozen=True)
class NoiseTrainingParams:
    """The ``noise_training`` section: ``datasets``, ``noise_model`` (a name from ``noise.models``),
    ``level`` (training noise level) and ``eval_level`` (Figure 16's test noise level, in ``noise.levels``)."""

    datasets: tuple[str, ...]
    noise_model: str
    level: float
    eval_level: float

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "NoiseTrainingParams":
        where = "noise_training"
        node = section(params, where)
        noise = NoiseParams.from_params(params)
        datasets = get_typed(node, "datasets", list, where)
        for i, name in enumerate(datasets):
            check_dataset(name, f"{where}.datasets[{i}]")
        name = noise_model(get_typed(node, "noise_model", str, where), f"{where}.noise_model").name
        if name not in noise.models:
            raise ParamError(f"{where}.noise_model: {name!r} is not in noise.models {list(noise.models)!r}, so it has no noisy test sets")
        level = check_noise_level(get_typed(node, "level", (int, float), where), f"{where}.level")
        eval_level = check_noise_level(get_typed(node, "eval_level", (int, float), where), f"{where}.eval_level")
        if eval_level not in noise.levels:
            raise ParamError(f"{where}.eval_level: {eval_level} is not in noise.levels {list(noise.levels)!r}")
        return cls(tuple(datasets), name, level, eval_level)


def build_noise_trained_data(params: Mapping[str, Any], dataset: str, root: Path) -> dict[str, Any]:
    """The variant tree's ``data/tokenized/<dataset>`` (noisy train and valid, clean test, the main
    vocabulary) and ``data/noisy/<dataset>/<noise_model>`` (the main tree's noisy test sets)."""
    settings = NoiseTrainingParams.from_params(params)
    noise = NoiseParams.from_params(params)
    tokenize = section(params, "tokenize")
    lowercase = get_typed(tokenize, "lowercase", bool, "tokenize")
    max_length = get_typed(tokenize, "max_length", int, "tokenize")
    main, variant = ProjectPaths(root), ProjectPaths(root / VARIANT_ROOT)
    model = noise_model(settings.noise_model)
    noisy_dir = main.noisy(dataset, settings.noise_model)
    char_vocabulary = load_char_vocabulary(noisy_dir / CHAR_VOCAB_FILE)
    vocabulary = load_vocabulary(main.tokenized(dataset))
    docs = read_release_csv(main.raw(dataset) / "train.csv", dataset_spec(dataset).num_classes)
    seed = noise.seed + SEED_OFFSET

    stats: dict[str, Any] = {"dataset": dataset, "noise_model": model.name, "level": settings.level, "seed": seed, "splits": {}}
    staged = staging_directory(variant.tokenized(dataset))
    try:
        for split_name in ("train", "valid"):
            clean = load_split(main.tokenized(dataset), split_name)
            rows = [int(r) for r in clean.source_rows]
            if rows and max(rows) >= len(docs):
                raise DataError(f"{main.tokenized(dataset) / (split_name + '.npz')}: source rows outside {main.raw(dataset) / 'train.csv'}; re-run tokenize")
            originals = [document_text(docs[r].title, docs[r].text) for r in rows]
            texts = [corrupt_text(text, settings.level, model, char_vocabulary, seed, r) for text, r in zip(originals, rows)]
            tokens, empty = _tokenize_noisy(texts, lowercase)
            ids, lengths, unknown, kept = encode_padded(tokens, vocabulary, max_length)
            save_arrays(staged / f"{split_name}.npz", tokens=ids, lengths=lengths, labels=clean.labels, source_rows=clean.source_rows)
            characters = sum(len(t) for t in originals)
            changed = sum(changed_characters(o, t) for o, t in zip(originals, texts))
            stats["splits"][split_name] = {
                "documents": len(rows),
                "char_change_rate": round(changed / characters, 6) if characters else 0.0,
                "oov_rate": round(unknown / kept, 6) if kept else 0.0,
                "empty_after_cleaning": empty,
            }
        for name in ("test.npz", "vocab.json", "classes.json"):  # the clean test split and the main vocabulary
            shutil.copy2(main.tokenized(dataset) / name, staged / name)
        write_json(staged / "noise_training.json", stats)
        replace_directory(staged, variant.tokenized(dataset))
    finally:
        if staged.exists():
            shutil.rmtree(staged)

    staged = staging_directory(variant.noisy(dataset, settings.noise_model))
    try:
        shutil.rmtree(staged)
        shutil.copytree(noisy_dir, staged)
        replace_directory(staged, variant.noisy(dataset, settings.noise_model))
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return stats
