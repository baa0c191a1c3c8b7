"""Data stages: ``download``, ``tokenize`` and ``noisy_test`` (paper sections 4.3.1, 4.3.3, 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import write_json
from ..download import run_download
from ..noise import build_noisy_test_sets
from ..paths import ProjectPaths
from ..preprocess import build_tokenized
from ..settings import DownloadSettings, NoiseSettings, TextSettings, TokenizeSettings


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
