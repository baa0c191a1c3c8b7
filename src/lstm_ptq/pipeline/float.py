"""Full-precision stages: ``train``, ``evaluate``, ``table1`` and ``noise_float`` (paper sections 4.3.1,
4.3.3, Table 1, Figure 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..artifacts import atomic_write_text, read_json, write_frame, write_json
from ..config import get_typed, section
from ..datasets import DATASETS
from ..evaluation import class_log_prior, confusion_rows, evaluate, float_scorer, score_split
from ..models import check_vocabulary_fits, load_float_model, save_state_dict
from ..noise import NoiseParams, level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import load_split, load_vocabulary
from ..reports import PAPER_TABLE1, table1_markdown
from ..robustness import noise_curve
from ..training import TrainParams, model_config_from_params, run_fingerprint, train_model
from . import log


def train_stage(params: Mapping[str, Any], dataset: str, model_type: str, root: Path) -> dict[str, Any]:
    paths = ProjectPaths(root)
    tokenized = paths.tokenized(dataset)
    vocabulary = load_vocabulary(tokenized)
    train, valid = load_split(tokenized, "train"), load_split(tokenized, "valid")
    config = model_config_from_params(params, model_type, len(vocabulary), DATASETS[dataset].num_classes)
    train_params = TrainParams.from_params(params, model_type)
    for name, split in (("train", train), ("valid", valid)):
        check_vocabulary_fits(config, split, str(tokenized / f"{name}.npz"))
    resume = paths.resume_state(dataset, model_type)
    resume.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(config, train_params, [tokenized / "train.npz", tokenized / "valid.npz"])
    result = train_model(config, train_params, train, valid, resume_path=resume, fingerprint=fingerprint)

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
    log("train", f"{result.train_seconds:.1f} s of training, {result.tokens_per_second:,.0f} tokens/s")
    return metrics


def evaluate_stage(params: Mapping[str, Any], dataset: str, model_type: str, root: Path) -> dict[str, Any]:
    paths = ProjectPaths(root)
    tokenized = paths.tokenized(dataset)
    classes = read_json(tokenized / "classes.json")
    config, model = load_float_model(paths, dataset, model_type)
    test = load_split(tokenized, "test")
    check_vocabulary_fits(config, test, str(tokenized / "test.npz"))
    use_prior = get_typed(section(params, "evaluate"), "use_log_prior", bool, "evaluate")
    prior = class_log_prior(load_split(tokenized, "train").labels, config.num_classes) if use_prior and model_type == "generative" else None
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    result = evaluate(score_split(float_scorer(model), test, batch_size), test.labels, prior)
    metrics = result.metrics(classes)
    metrics["paper_accuracy"] = PAPER_TABLE1[(dataset, model_type)] / 100
    metrics["train_rows"] = len(load_split(tokenized, "train"))
    write_json(paths.evaluate_metrics(dataset, model_type), metrics)
    write_frame(paths.confusion(dataset, model_type), confusion_rows(result, classes))
    return metrics


TABLE1_MODELS = ("generative", "discriminative")


def table1_stage(root: Path, datasets: Sequence[str]) -> str:
    """Table 1 beside the paper's values, as CSV and markdown under metrics/; returns the markdown."""
    paths = ProjectPaths(root)
    records = []
    for dataset in datasets:
        for model_type in TABLE1_MODELS:
            metrics = read_json(paths.evaluate_metrics(dataset, model_type))
            records.append(
                {
                    "dataset": dataset,
                    "model": model_type,
                    "accuracy_pct": f"{100 * metrics['accuracy']:.2f}",
                    "paper_accuracy_pct": f"{PAPER_TABLE1[(dataset, model_type)]:.2f}",
                    "train_rows": metrics["train_rows"],
                    "test_rows": metrics["documents"],
                }
            )
    table = pd.DataFrame(records, dtype=object)
    write_frame(paths.table1_csv(), table)
    text = table1_markdown(table)
    atomic_write_text(paths.table1_md(), text)
    return text


def float_noise_stage(params: Mapping[str, Any], dataset: str, model_type: str, noise_model: str, root: Path) -> pd.DataFrame:
    """Float accuracy at every noise level (Figure 9): metrics JSON and a CSV curve with the corruption stats."""
    paths = ProjectPaths(root)
    noise = NoiseParams.from_params(params)
    config, model = load_float_model(paths, dataset, model_type)
    noisy_dir = paths.noisy(dataset, noise_model)
    for level in noise.levels:
        check_vocabulary_fits(config, load_noisy_split(noisy_dir, level), str(noisy_dir / f"{level_name(level)}.npz"))
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    curve = pd.DataFrame(noise_curve(float_scorer(model), noisy_dir, noise.levels, batch_size), dtype=object)
    stats = read_json(noisy_dir / "stats.json")
    metrics: dict[str, Any] = {f"accuracy@{level_name(level)}": accuracy for level, accuracy in zip(curve["noise_level"], curve["accuracy"])}
    metrics["documents"] = int(len(load_noisy_split(noisy_dir, noise.levels[0])))
    metrics["noise_model"] = noise_model
    write_json(paths.float_noise_metrics(dataset, model_type, noise_model), metrics)
    level_stats = [stats["levels"][level_name(level)] for level in curve["noise_level"]]
    curve["char_change_rate"] = pd.Series([s["char_change_rate"] for s in level_stats], dtype=object)
    curve["oov_rate"] = pd.Series([s["oov_rate"] for s in level_stats], dtype=object)
    write_frame(paths.float_noise_curve(dataset, model_type, noise_model), curve)
    return curve
