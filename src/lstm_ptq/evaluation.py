"""Test-set evaluation shared by float and quantized models: accuracy, per-class accuracy, confusion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .artifacts import load_arrays, require_array, save_arrays
from .errors import DataError
from .preprocess import EncodedSplit

if TYPE_CHECKING:
    import pandas as pd

# (tokens [B, L], lengths [B]) -> [B, C] class scores, higher is better.
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def length_sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length, so little work is spent on padding."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def batch_tensors(split: EncodedSplit, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = split.lengths[rows]
    width = int(lengths.max())
    # as_tensor, not from_numpy: it follows torch's default device (lstm_ptq.runtime), a copy-free view on the CPU
    return torch.as_tensor(split.tokens[rows, :width].astype(np.int64)), torch.as_tensor(lengths.astype(np.int64))


def float_scorer(model: torch.nn.Module) -> Scorer:
    """[B, C] class scores, higher is better: the model's own ``class_scores`` (log class probabilities of
    the discriminative model; minus the sequence losses of the generative one, equation 14)."""
    return model.class_scores


@torch.no_grad()
def score_split(scorer: Scorer, split: EncodedSplit, batch_size: int = 256) -> np.ndarray:
    """[N, C] class scores for every document, in the split's order."""
    out: np.ndarray | None = None
    for rows in length_sorted_batches(split.lengths, batch_size):
        scores = scorer(*batch_tensors(split, rows)).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(split), scores.shape[1]), dtype=np.float64)
        out[rows] = scores
    assert out is not None, "empty split"
    return out


@dataclass(frozen=True)
class Evaluation:
    predictions: np.ndarray  # [N]
    labels: np.ndarray  # [N]
    true_label_loss: np.ndarray  # [N]: -score of the true label (sequence loss for generative models)
    scores: np.ndarray  # [N, C]: the class scores the predictions came from (before any log prior)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean())

    def confusion(self, num_classes: int) -> np.ndarray:
        matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(matrix, (self.labels, self.predictions), 1)
        return matrix

    def metrics(self, class_names: list[str]) -> dict[str, Any]:
        confusion = self.confusion(len(class_names))
        per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
        return {
            "accuracy": round(self.accuracy, 6),
            "documents": int(len(self.labels)),
            "mean_loss": round(float(self.true_label_loss.mean()), 6),
            "per_class_accuracy": {name: round(float(a), 6) for name, a in zip(class_names, per_class)},
        }


def evaluate(scores: np.ndarray, labels: np.ndarray, log_prior: np.ndarray | None = None) -> Evaluation:
    decision = scores if log_prior is None else scores + log_prior[None, :]
    predictions = decision.argmax(axis=1)
    true_loss = -scores[np.arange(len(labels)), labels]
    return Evaluation(predictions, labels, true_loss, scores)


def save_test_scores(path: Path, evaluation: Evaluation) -> None:
    """Per-document class scores and predictions of one model on the test split, in the split's order: what
    the analysis stages pair models on (McNemar, per-class drops, logit variance) without scoring again."""
    save_arrays(path, scores=evaluation.scores.astype(np.float32), predictions=evaluation.predictions.astype(np.int32))


def load_test_scores(path: Path, documents: int, num_classes: int) -> dict[str, np.ndarray]:
    """:func:`save_test_scores`' arrays, checked against the test split they must describe."""
    arrays = load_arrays(path)
    for name in ("scores", "predictions"):
        if name not in arrays:
            raise DataError(f"{path}: no {name!r} array; expected the output of an evaluate or calibrate stage")
    require_array(arrays, path, "scores", ndim=2, kinds="f")
    require_array(arrays, path, "predictions", ndim=1, kinds="iu", low=0, high=num_classes)
    if arrays["scores"].shape != (documents, num_classes) or arrays["predictions"].shape != (documents,):
        raise DataError(
            f"{path}: scores {arrays['scores'].shape} and predictions {arrays['predictions'].shape} do not match the test split "
            f"({documents} documents, {num_classes} classes); rerun the stage that wrote it"
        )
    return arrays


def class_log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log p(y) from training label frequencies (equation 6), add-one smoothed."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def confusion_rows(evaluation: Evaluation, class_names: list[str]) -> pd.DataFrame:
    """One row per document (``actual``, ``predicted``), the format ``dvc plots`` draws as a confusion matrix."""
    import pandas as pd  # here: the quantizing stages import this module and never write a frame

    names = np.array(class_names, dtype=object)
    return pd.DataFrame({"actual": names[evaluation.labels], "predicted": names[evaluation.predictions]}, columns=["actual", "predicted"], dtype=object)
