"""Accuracy under character-level input noise (paper sections 4.3.3 and 5.5, Figures 9 and 10), and the
per-document predictions behind it, which the findings report pairs across models (claims C13-C15)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import load_arrays, save_arrays
from .errors import DataError
from .evaluation import Scorer, evaluate, score_split
from .noise import load_noisy_split


@dataclass(frozen=True)
class NoisePredictions:
    """One model's predicted labels at every noise level on the same test documents (rows of the test split)."""

    levels: np.ndarray  # [L] noise levels
    documents: np.ndarray  # [N] test rows, in order
    predictions: np.ndarray  # [L, N] predicted labels

    def correct(self, labels: np.ndarray, levels: Sequence[float], documents: np.ndarray | None = None) -> np.ndarray:
        """Per-document correctness averaged over ``levels`` (one level: right or wrong), on ``documents``
        (default: this file's own)."""
        rows = [self._level_row(level) for level in levels]
        chosen = self.predictions[rows]
        if documents is not None:
            position = {int(d): i for i, d in enumerate(self.documents)}
            missing = [int(d) for d in documents if int(d) not in position]
            if missing:
                raise DataError(f"noise predictions hold no prediction for test rows {missing[:5]}")
            chosen = chosen[:, [position[int(d)] for d in documents]]
            labels = labels[documents]
        else:
            labels = labels[self.documents]
        right = chosen == labels[None, :]
        return right[0] if len(levels) == 1 else right.mean(axis=0)

    def _level_row(self, level: float) -> int:
        matches = np.flatnonzero(np.isclose(self.levels, level))
        if not matches.size:
            raise DataError(f"noise predictions hold no noise level {level}; they hold {self.levels.tolist()}")
        return int(matches[0])


def noise_curve(
    scorer: Scorer, noisy_dir: Path, levels: Sequence[float], batch_size: int, num_classes: int, documents: np.ndarray | None = None
) -> tuple[list[dict[str, Any]], NoisePredictions]:
    """Accuracy at every noise level on the test ``documents`` (default: all), with every prediction; every
    level holds the same documents in the same order."""
    rows, predictions = [], []
    for level in levels:
        split = load_noisy_split(noisy_dir, level, num_classes)
        chosen = np.arange(len(split)) if documents is None else documents
        split = split.subset(chosen)
        result = evaluate(score_split(scorer, split, batch_size), split.labels)
        rows.append({"noise_level": level, "accuracy": round(result.accuracy, 6), "mean_loss": round(float(result.true_label_loss.mean()), 6)})
        predictions.append(result.predictions.astype(np.int32))
    return rows, NoisePredictions(np.asarray(levels, dtype=np.float64), np.asarray(chosen, dtype=np.int64), np.stack(predictions))


def save_noise_predictions(path: Path, noise: NoisePredictions) -> None:
    save_arrays(path, levels=noise.levels, documents=noise.documents, predictions=noise.predictions)


def load_noise_predictions(path: Path, test_documents: int, num_classes: int) -> NoisePredictions:
    """:func:`save_noise_predictions`' arrays, checked against the test split they describe."""
    arrays = load_arrays(path)
    missing = sorted({"levels", "documents", "predictions"} - set(arrays))
    if missing:
        raise DataError(f"{path}: missing arrays {missing}; expected the output of a noise_float or noise_quantized stage")
    levels, documents, predictions = arrays["levels"], arrays["documents"], arrays["predictions"]
    if levels.ndim != 1 or documents.ndim != 1 or predictions.shape != (levels.size, documents.size):
        raise DataError(f"{path}: predictions {predictions.shape} do not match {levels.size} levels x {documents.size} documents")
    if documents.size and (documents.min() < 0 or documents.max() >= test_documents):
        raise DataError(f"{path}: test rows outside 0..{test_documents - 1}; rerun the stage that wrote it")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise DataError(f"{path}: predicted labels outside 0..{num_classes - 1}")
    return NoisePredictions(levels, documents, predictions)
