"""Full-precision stages: ``train``, ``evaluate``, ``table1`` and ``noise_float`` (paper sections 4.3.1,
4.3.3, Table 1, Figure 9)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..artifacts import read_json, write_frame, write_json
from ..datasets import DATASETS
from ..evaluation import class_log_prior, confusion_rows, evaluate, float_scorer, save_test_scores, score_split
from ..models import check_vocabulary_fits, load_float_model, save_state_dict
from ..noise import level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import load_split, load_vocabulary
from ..reports import PAPER_TABLE1
from ..robustness import noise_curve, save_noise_predictions
from ..settings import EvaluateSettings, ModelSettings, NoiseSettings, TrainSettings
from ..training import model_config, run_fingerprint, train_model
from . import log


def train_stage(dataset: str, model_type: str, model: ModelSettings, train_settings: TrainSettings, paths: ProjectPaths) -> dict[str, Any]:
    tokenized = paths.tokenized(dataset)
    vocabulary = load_vocabulary(tokenized)
    num_classes = DATASETS[dataset].num_classes
    train, valid = load_split(tokenized, "train", num_classes), load_split(tokenized, "valid", num_classes)
    config = model_config(model, model_type, len(vocabulary), num_classes)
    for name, split in (("train", train), ("valid", valid)):
        check_vocabulary_fits(config, split, str(tokenized / f"{name}.npz"))
    resume = paths.resume_state(dataset, model_type)
    resume.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(config, train_settings, [tokenized / "train.npz", tokenized / "valid.npz"])
    result = train_model(config, train_settings, train, valid, resume_path=resume, fingerprint=fingerprint)

    model_dir = paths.float_model_dir(dataset, model_type)
    write_json(model_dir / "config.json", config.to_dict())
    save_state_dict(model_dir / "model.pt", result.state_dict)
    write_frame(paths.train_curve(dataset, model_type), pd.DataFrame(result.history, dtype=object))
    metrics = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_valid_accuracy": round(result.best_valid_accuracy, 6),
        "train_rows": len(train),
        "vocab_size": len(vocabulary),
    }
    write_json(paths.train_metrics(dataset, model_type), metrics)
    resume.unlink(missing_ok=True)  # the finished model is the output now
    log(
        "train",
        f"{result.train_seconds:.1f} s of training on {train_settings.num_threads} threads (train.num_threads), {result.tokens_per_second:,.0f} tokens/s",
    )
    return metrics


def evaluate_stage(dataset: str, model_type: str, settings: EvaluateSettings, paths: ProjectPaths) -> dict[str, Any]:
    tokenized = paths.tokenized(dataset)
    classes = read_json(tokenized / "classes.json")
    config, model = load_float_model(paths, dataset, model_type)
    test = load_split(tokenized, "test", DATASETS[dataset].num_classes)
    check_vocabulary_fits(config, test, str(tokenized / "test.npz"))
    use_prior = settings.use_log_prior and model.scores_are_likelihoods
    prior = class_log_prior(load_split(tokenized, "train", DATASETS[dataset].num_classes).labels, config.num_classes) if use_prior else None
    result = evaluate(score_split(float_scorer(model), test, settings.batch_size), test.labels, prior)
    metrics = result.metrics(classes)
    metrics["paper_accuracy"] = PAPER_TABLE1[(dataset, model_type)] / 100
    metrics["train_rows"] = len(load_split(tokenized, "train", DATASETS[dataset].num_classes))
    save_test_scores(paths.float_test_scores(dataset, model_type), result)
    write_json(paths.evaluate_metrics(dataset, model_type), metrics)
    write_frame(paths.confusion(dataset, model_type), confusion_rows(result, classes))
    return metrics


def float_noise_stage(
    dataset: str, model_type: str, noise_model: str, noise: NoiseSettings, evaluate_settings: EvaluateSettings, paths: ProjectPaths
) -> pd.DataFrame:
    """Float accuracy at every noise level (Figure 9): metrics JSON and a CSV curve with the corruption stats."""
    config, model = load_float_model(paths, dataset, model_type)
    noisy_dir = paths.noisy(dataset, noise_model)
    for level in noise.levels:
        check_vocabulary_fits(config, load_noisy_split(noisy_dir, level, DATASETS[dataset].num_classes), str(noisy_dir / f"{level_name(level)}.npz"))
    rows, predictions = noise_curve(float_scorer(model), noisy_dir, noise.levels, evaluate_settings.batch_size, config.num_classes)
    curve = pd.DataFrame(rows, dtype=object)
    stats = read_json(noisy_dir / "stats.json")
    metrics: dict[str, Any] = {f"accuracy@{level_name(level)}": accuracy for level, accuracy in zip(curve["noise_level"], curve["accuracy"])}
    metrics["documents"] = int(len(load_noisy_split(noisy_dir, noise.levels[0], DATASETS[dataset].num_classes)))
    metrics["noise_model"] = noise_model
    save_noise_predictions(paths.float_noise_predictions(dataset, model_type, noise_model), predictions)
    write_json(paths.float_noise_metrics(dataset, model_type, noise_model), metrics)
    level_stats = [stats["levels"][level_name(level)] for level in curve["noise_level"]]
    curve["char_change_rate"] = pd.Series([s["char_change_rate"] for s in level_stats], dtype=object)
    curve["oov_rate"] = pd.Series([s["oov_rate"] for s in level_stats], dtype=object)
    write_frame(paths.float_noise_curve(dataset, model_type, noise_model), curve)
    return curve
