"""Stage bodies: read inputs named by :class:`ProjectPaths`, call the library, write outputs atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .artifacts import atomic_write_bytes, read_json, write_csv, write_json
from .config import get_typed, section
from .datasets import DATASETS
from .evaluation import class_log_prior, confusion_rows, evaluate, float_scorer, score_split
from .models import MODEL_TYPES, ModelConfig, load_model
from .paths import ProjectPaths
from .preprocess import load_split, load_vocabulary
from .training import TrainParams, check_vocabulary_fits, model_config_from_params, run_fingerprint, train_model

# Paper Table 1: test accuracy (%) of the full-precision classifiers.
PAPER_TABLE1 = {
    ("ag_news", "generative"): 88.95,
    ("ag_news", "discriminative"): 89.51,
    ("dbpedia", "generative"): 95.93,
    ("dbpedia", "discriminative"): 97.62,
}


def save_state_dict(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in state.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_float_model(paths: ProjectPaths, dataset: str, model_type: str) -> tuple[ModelConfig, torch.nn.Module]:
    model_dir = paths.float_model_dir(dataset, model_type)
    config = ModelConfig.from_dict(read_json(model_dir / "config.json"), where=str(model_dir / "config.json"))
    return config, load_model(config, model_dir / "model.pt")


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
    write_csv(paths.train_curve(dataset, model_type), result.history, list(result.history[0]))
    metrics = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_valid_accuracy": round(result.best_valid_accuracy, 6),
        "train_rows": len(train),
        "vocab_size": len(vocabulary),
        "train_seconds": round(result.train_seconds, 1),
        "tokens_per_second": round(result.tokens_per_second, 1),
    }
    write_json(paths.train_metrics(dataset, model_type), metrics)
    resume.unlink(missing_ok=True)  # the finished model is the output now
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
    write_csv(paths.confusion(dataset, model_type), confusion_rows(result, classes), ["actual", "predicted"])
    return metrics


def table1_stage(root: Path, datasets: list[str]) -> str:
    """Table 1 beside the paper's values, as CSV and markdown under metrics/."""
    paths = ProjectPaths(root)
    rows = []
    for dataset in datasets:
        for model_type in ("generative", "discriminative"):
            metrics = read_json(paths.evaluate_metrics(dataset, model_type))
            rows.append(
                {
                    "dataset": dataset,
                    "model": model_type,
                    "accuracy_pct": f"{100 * metrics['accuracy']:.2f}",
                    "paper_accuracy_pct": f"{PAPER_TABLE1[(dataset, model_type)]:.2f}",
                    "train_rows": metrics["train_rows"],
                    "test_rows": metrics["documents"],
                }
            )
    write_csv(root / "metrics" / "table1.csv", rows, list(rows[0]))
    lines = [
        "| model | dataset | test accuracy (%) | paper (%) | training rows | test rows |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['dataset']} | {r['accuracy_pct']} | {r['paper_accuracy_pct']} | {r['train_rows']} | {r['test_rows']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    from .artifacts import atomic_write_text

    atomic_write_text(root / "metrics" / "table1.md", text)
    return text
