"""Accuracy under character-level input noise (paper sections 4.3.3 and 5.5, Figures 9 and 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .artifacts import read_json, write_csv, write_json
from .config import get_typed, section
from .evaluation import Scorer, evaluate, float_scorer, score_split
from .models import check_vocabulary_fits, load_float_model
from .noise import NoiseParams, level_name, load_noisy_split
from .paths import ProjectPaths


def noise_curve(scorer: Scorer, noisy_dir: Path, levels: Sequence[float], batch_size: int) -> list[dict[str, Any]]:
    """Accuracy at every noise level; every level holds the same documents in the same order."""
    rows = []
    for level in levels:
        split = load_noisy_split(noisy_dir, level)
        result = evaluate(score_split(scorer, split, batch_size), split.labels)
        rows.append({"noise_level": level, "accuracy": round(result.accuracy, 6), "mean_loss": round(float(result.true_label_loss.mean()), 6)})
    return rows



def float_noise_stage(params: Mapping[str, Any], dataset: str, model_type: str, noise_model: str, root: Path) -> list[dict[str, Any]]:
    paths = ProjectPaths(root)
    noise = NoiseParams.from_params(params)
    config, model = load_float_model(paths, dataset, model_type)
    noisy_dir = paths.noisy(dataset, noise_model)
    for level in noise.levels:
        check_vocabulary_fits(config, load_noisy_split(noisy_dir, level), str(noisy_dir / f"{level_name(level)}.npz"))
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    rows = noise_curve(float_scorer(model), noisy_dir, noise.levels, batch_size)
    stats = read_json(noisy_dir / "stats.json")
    metrics = {f"accuracy@{level_name(r['noise_level'])}": r["accuracy"] for r in rows}
    metrics["documents"] = int(len(load_noisy_split(noisy_dir, noise.levels[0])))
    metrics["noise_model"] = noise_model
    write_json(paths.float_noise_metrics(dataset, model_type, noise_model), metrics)
    for row in rows:
        level_stats = stats["levels"][level_name(row["noise_level"])]
        row["char_change_rate"], row["oov_rate"] = level_stats["char_change_rate"], level_stats["oov_rate"]
    write_csv(paths.float_noise_curve(dataset, model_type, noise_model), rows, list(rows[0]))
    return rows
