"""Data stages: ``download``, ``tokenize`` and ``noisy_test`` (paper sections 4.3.1, 4.3.3, 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..artifacts import write_json
from ..config import DownloadParams, TokenizeParams
from ..download import run_download
from ..noise import NoiseParams, build_noisy_test_sets
from ..paths import ProjectPaths
from ..preprocess import build_tokenized


def download_stage(params: Mapping[str, Any], dataset: str, bundled_root: Path, root: Path) -> None:
    """data/raw/<dataset>/{train,test}.csv and classes.txt, from the bundled rows or the release archive."""
    run_download(DownloadParams.from_params(params, dataset), bundled_root, ProjectPaths(root).raw(dataset))


def tokenize_stage(params: Mapping[str, Any], dataset: str, root: Path) -> dict[str, Any]:
    """data/raw/<dataset> -> data/tokenized/<dataset> + metrics/tokenize/<dataset>.json."""
    paths = ProjectPaths(root)
    stats = build_tokenized(dataset, paths.raw(dataset), paths.tokenized(dataset), TokenizeParams.from_params(params))
    write_json(paths.tokenize_metrics(dataset), stats)
    return stats


def noisy_test_stage(params: Mapping[str, Any], dataset: str, noise_model: str, root: Path) -> dict[str, Any]:
    """The test split corrupted at every noise level, built once per dataset and noise model."""
    noise, tokenize = NoiseParams.from_params(params), TokenizeParams.from_params(params)
    paths = ProjectPaths(root)
    stats = build_noisy_test_sets(
        dataset,
        paths.raw(dataset),
        paths.tokenized(dataset),
        paths.noisy(dataset, noise_model),
        noise_model,
        noise.levels,
        noise.seed,
        tokenize.lowercase,
        tokenize.max_length,
    )
    write_json(paths.noisy_stats(dataset, noise_model), stats)
    return stats
