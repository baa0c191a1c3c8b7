"""Data stages: ``download``, ``tokenize``, ``noisy_test`` (paper sections 4.3.1, 4.3.3, 5.1) and the
noise-trained variant's ``noise_train_data`` (section 7): none of them imports torch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..artifacts import save_arrays, staged_output, write_json
from ..datasets import dataset_spec, read_release_csv
from ..download import run_download
from ..noise import CHAR_VOCAB_FILE, build_noisy_test_sets, load_char_vocabulary, noise_model
from ..noise_training import SEED_OFFSET, corrupt_split
from ..paths import ProjectPaths
from ..preprocess import build_tokenized, load_split, load_vocabulary
from ..settings import DownloadSettings, NoiseSettings, NoiseTrainingSettings, TextSettings, TokenizeSettings


def download_stage(settings: DownloadSettings, bundled_root: Path, root: Path) -> None:
    """data/raw/<dataset>/{train,test}.csv and classes.txt, from the bundled rows or the release archive."""
    run_download(settings, bundled_root, ProjectPaths(root).raw(settings.dataset))


def tokenize_stage(dataset: str, settings: TokenizeSettings, root: Path) -> dict[str, Any]:
    """data/raw/<dataset> -> data/tokenized/<dataset> + metrics/tokenize/<dataset>.json."""
    paths = ProjectPaths(root)
    stats = build_tokenized(dataset, paths.raw(dataset), paths.tokenized(dataset), settings)
    write_json(paths.tokenize_metrics(dataset), stats)
    return stats


def noisy_test_stage(dataset: str, noise_model: str, noise: NoiseSettings, text: TextSettings, root: Path) -> dict[str, Any]:
    """The test split corrupted at every noise level, built once per dataset and noise model."""
    paths = ProjectPaths(root)
    stats = build_noisy_test_sets(
        dataset,
        paths.raw(dataset),
        paths.tokenized(dataset),
        paths.noisy(dataset, noise_model),
        noise_model,
        noise.levels,
        noise.seed,
        text.lowercase,
        text.max_length,
    )
    write_json(paths.noisy_stats(dataset, noise_model), stats)
    return stats


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
