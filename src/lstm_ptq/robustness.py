"""Accuracy under character-level input noise (paper sections 4.3.3 and 5.5, Figures 9 and 10)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluation import Scorer, evaluate, score_split
from .noise import load_noisy_split


def noise_curve(scorer: Scorer, noisy_dir: Path, levels: Sequence[float], batch_size: int, num_classes: int) -> list[dict[str, Any]]:
    """Accuracy at every noise level; every level holds the same documents in the same order."""
    rows = []
    for level in levels:
        split = load_noisy_split(noisy_dir, level, num_classes)
        result = evaluate(score_split(scorer, split, batch_size), split.labels)
        rows.append({"noise_level": level, "accuracy": round(result.accuracy, 6), "mean_loss": round(float(result.true_label_loss.mean()), 6)})
    return rows
