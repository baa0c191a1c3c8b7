"""Per-class effects of PTQ (the disparate-impact question: does quantization hurt some classes more than
others, and does it shrink the spread of the class scores?), from the test scores the evaluate and calibrate
stages saved (evaluation.save_test_scores): no model is run again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def score_variance(scores: np.ndarray) -> np.ndarray:
    """Per document, the variance of its class scores across classes. A discriminative model's scores are
    log-softmax logits, which differ from the logits by one constant per document, so this is the variance of
    its logits; a generative model's are minus its per-label document losses."""
    return np.asarray(scores, dtype=np.float64).var(axis=1)


def per_class_effects(labels: np.ndarray, float_run: dict[str, np.ndarray], run: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """Per true class: documents, float and quantized accuracy, the drop, and the mean score variance
    (:func:`score_variance`) of the float and the quantized model, from the two models' saved test scores
    and predictions (evaluation.save_test_scores)."""
    float_correct = float_run["predictions"] == labels
    correct = run["predictions"] == labels
    float_var, var = score_variance(float_run["scores"]), score_variance(run["scores"])
    rows = []
    for c in range(float_run["scores"].shape[1]):
        members = labels == c
        n = int(members.sum())
        if n == 0:
            continue
        float_accuracy, accuracy = float(float_correct[members].mean()), float(correct[members].mean())
        rows.append(
            {
                "class_index": c,
                "documents": n,
                "float_accuracy": float_accuracy,
                "accuracy": accuracy,
                "accuracy_drop": float_accuracy - accuracy,
                "float_score_variance": float(float_var[members].mean()),
                "score_variance": float(var[members].mean()),
            }
        )
    return rows


def per_class_summary(per_class: pd.DataFrame) -> pd.DataFrame:
    """One row per calibrated cell: the accuracy drop of its worst and best class, their spread (standard
    deviation and range over classes), and the mean score variance of the quantized over the float model."""
    numeric = per_class.astype({"accuracy_drop": float, "float_score_variance": float, "score_variance": float, "documents": int})
    records = []
    for (dataset, model_type, bit_width, scheme), cell in numeric.groupby(["dataset", "model_type", "bit_width", "scheme"], sort=False):
        drops = cell["accuracy_drop"].to_numpy()
        weights = cell["documents"].to_numpy()
        float_var = float(np.average(cell["float_score_variance"], weights=weights))
        var = float(np.average(cell["score_variance"], weights=weights))
        records.append(
            {
                "dataset": dataset,
                "model_type": model_type,
                "bit_width": bit_width,
                "scheme": scheme,
                "mean_class_drop": round(float(drops.mean()), 6),
                "drop_std": round(float(drops.std(ddof=0)), 6),
                "drop_range": round(float(drops.max() - drops.min()), 6),
                "worst_class": cell["class"].iloc[int(drops.argmax())],
                "worst_class_drop": round(float(drops.max()), 6),
                "float_score_variance": round(float_var, 6),
                "score_variance": round(var, 6),
                "variance_ratio": round(var / float_var, 6) if float_var > 0 else None,
            }
        )
    return pd.DataFrame(records, dtype=object)
