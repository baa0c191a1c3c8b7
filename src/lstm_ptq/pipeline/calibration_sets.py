"""Stage ``calibration_sets`` per model (section 4.2.2): the row indices of every calibration scheme.

A module of its own, apart from :mod:`.ptq`: choosing the rows needs the float model, never Brevitas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..artifacts import save_arrays, write_json
from ..calibration import build_calibration_sets, needs_predictions
from ..datasets import dataset_spec
from ..evaluation import float_scorer, score_split
from ..models import load_float_model
from ..paths import ProjectPaths
from ..preprocess import load_split
from ..settings import CalibrationSettings

PREDICTED_LABELS = "predicted_labels"  # the float model's training predictions in rows.npz (predicted_label feeding)


def calibration_sets_stage(
    dataset: str, model_type: str, schemes: Sequence[str], calibration: CalibrationSettings, seed: int, paths: ProjectPaths
) -> dict[str, Any]:
    """Row indices of every calibration scheme (one common size: ``calibration.fraction`` of the training
    split, or less where a scheme's classes cannot supply it), plus their class histograms; the float
    model's predicted training labels too when the generative decoder is fed them."""
    train = load_split(paths.tokenized(dataset), "train", dataset_spec(dataset).num_classes)
    config, float_model = load_float_model(paths, dataset, model_type)
    feed_predictions = calibration.decoder_feeding == "predicted_label" and model_type == "generative"
    predicted = None
    if needs_predictions(schemes) or feed_predictions:
        predicted = score_split(float_scorer(float_model), train).argmax(axis=1)
    rows, summary = build_calibration_sets(train.labels, config.num_classes, calibration.fraction, list(schemes), seed, predicted)
    if predicted is not None:
        summary["float_train_accuracy_for_pseudo_labels"] = round(float((predicted == train.labels).mean()), 6)
    arrays = {name: r.astype(np.int64) for name, r in rows.items()}
    if feed_predictions:
        arrays[PREDICTED_LABELS] = predicted.astype(np.int64)
    save_arrays(paths.calibration_rows(dataset, model_type), **arrays)
    write_json(paths.calibration_summary(dataset, model_type), summary)
    return summary
