"""Training of the full-precision classifiers (paper section 4.3.1).

Adam (lr 1e-3), batch 32, early stopping on validation accuracy with a patience, gradient clipping,
a seed, and deterministic CPU runs: each epoch's batch order comes from a generator seeded with
(seed, epoch), so a run killed between epochs resumes from its last saved epoch and ends with the
same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .artifacts import load_torch, save_torch
from .errors import DataError
from .evaluation import batch_tensors, evaluate, float_scorer, score_split
from .models import ModelConfig, build_model
from .preprocess import EncodedSplit
from .settings import ModelSettings, TrainSettings


def model_config(settings: ModelSettings, model_type: str, vocab_size: int, num_classes: int) -> ModelConfig:
    """The ``model`` section's sizes for one classifier of a dataset."""
    return ModelConfig(model_type=model_type, vocab_size=vocab_size, num_classes=num_classes, **asdict(settings))


def epoch_batches(lengths: np.ndarray, params: TrainSettings, epoch: int) -> list[np.ndarray]:
    """Shuffled batches of similar-length rows; the order depends only on (seed, epoch)."""
    rng = np.random.default_rng([params.seed, epoch])
    order = rng.permutation(len(lengths))
    bucket = params.batch_size * params.bucket_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(order), bucket):
        chunk = order[start : start + bucket]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + params.batch_size] for i in range(0, len(chunk), params.batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def run_fingerprint(config: ModelConfig, params: TrainSettings, data_files: list[Path]) -> str:
    """Identifies a training run: a resume state is only reused by the run that wrote it."""
    digest = hashlib.sha256(json.dumps([config.to_dict(), asdict(params)], sort_keys=True).encode())
    for path in data_files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _evaluate(model: nn.Module, split: EncodedSplit) -> tuple[float, float]:
    model.eval()
    result = evaluate(score_split(float_scorer(model), split), split.labels)
    model.train()
    return result.accuracy, float(result.true_label_loss.mean())


def _fresh_model(config: ModelConfig, params: TrainSettings) -> tuple[nn.Module, torch.optim.Adam]:
    """The seeded initial model and its optimizer: the same weights whether or not a resume state was discarded."""
    torch.manual_seed(params.seed)
    model = build_model(config)
    return model, torch.optim.Adam(model.parameters(), lr=params.learning_rate)


def _discard(resume_path: Path, reason: str) -> None:
    warnings.warn(f"{resume_path}: training resume state discarded ({reason}); training restarts from epoch 1", stacklevel=3)
    resume_path.unlink(missing_ok=True)


def load_resume_state(resume_path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The resume state a killed run of this training (``fingerprint``) left, or None: no file, another run's
    file, or a damaged one (zero bytes, truncated by a full disk or a kill mid-write by an older version),
    which is discarded with a warning naming it, so every rerun does not fail on it."""
    if not resume_path.is_file():
        return None
    try:
        saved = load_torch(resume_path, "training resume state")
    except DataError as exc:
        _discard(resume_path, str(exc).removeprefix(f"{resume_path}: "))
        return None
    if not isinstance(saved, dict):
        _discard(resume_path, f"a {type(saved).__name__}, not a mapping")
        return None
    return saved if saved.get("fingerprint") == fingerprint else None


@dataclass
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int
    best_valid_accuracy: float
    train_seconds: float
    tokens_per_second: float
    resumed_from_epoch: int


def train_model(
    config: ModelConfig,
    params: TrainSettings,
    train: EncodedSplit,
    valid: EncodedSplit,
    resume_path: Path | None = None,
    fingerprint: str = "",
    progress: bool | None = None,
) -> TrainResult:
    """Train with early stopping on validation accuracy; returns the best-on-validation state dict."""
    torch.set_num_threads(params.num_threads)
    torch.use_deterministic_algorithms(True)
    model, optimizer = _fresh_model(config, params)
    history: list[dict[str, float]] = []
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    best_accuracy, best_epoch, stale, start_epoch = -1.0, 0, 0, 1
    elapsed, tokens_seen = 0.0, 0

    saved = load_resume_state(resume_path, fingerprint) if resume_path is not None else None
    if saved is not None:
        try:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            best_state = dict(saved["best_state"])
            history = [dict(row) for row in saved["history"]]
            best_accuracy, best_epoch, stale = float(saved["best_accuracy"]), int(saved["best_epoch"]), int(saved["stale"])
            elapsed, tokens_seen = float(saved["elapsed"]), int(saved["tokens_seen"])
            start_epoch = int(saved["epoch"]) + 1
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a loadable file that is not this run's state
            _discard(resume_path, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            model, optimizer = _fresh_model(config, params)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
            history, best_accuracy, best_epoch, stale, start_epoch, elapsed, tokens_seen = [], -1.0, 0, 0, 1, 0.0, 0
    resumed_from = start_epoch - 1

    rng = np.random.default_rng([params.seed, 0])
    accuracy_rows = np.sort(rng.permutation(len(train))[: params.train_accuracy_rows])
    train_probe = train.subset(accuracy_rows)
    labels_all = torch.as_tensor(train.labels.astype(np.int64))

    model.train()
    for epoch in range(start_epoch, params.max_epochs + 1):
        if stale >= params.patience:
            break
        started = time.perf_counter()
        total_loss, total_units = 0.0, 0
        batches = epoch_batches(train.lengths, params, epoch)
        for rows in tqdm(batches, desc=f"{config.model_type} epoch {epoch}", disable=None if progress is None else not progress, leave=False):
            tokens, lengths = batch_tensors(train, rows)
            loss, reported, units = model.training_loss(tokens, lengths, labels_all[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            optimizer.step()
            total_loss += reported
            total_units += units
            tokens_seen += int(lengths.sum())
        elapsed += time.perf_counter() - started
        valid_accuracy, valid_loss = _evaluate(model, valid)
        train_accuracy, _ = _evaluate(model, train_probe)
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(total_loss / max(total_units, 1), 6),
                "train_accuracy": round(train_accuracy, 6),
                "valid_loss": round(valid_loss, 6),
                "valid_accuracy": round(valid_accuracy, 6),
            }
        )
        if valid_accuracy > best_accuracy:
            best_accuracy, best_epoch, stale = valid_accuracy, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if resume_path is not None:
            save_torch(
                resume_path,
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_state": best_state,
                    "history": history,
                    "best_accuracy": best_accuracy,
                    "best_epoch": best_epoch,
                    "stale": stale,
                    "elapsed": elapsed,
                    "tokens_seen": tokens_seen,
                },
                working_state=True,  # kept by this run for itself: a killed run resumes from it
            )
    return TrainResult(
        state_dict=best_state,
        history=history,
        best_epoch=best_epoch,
        best_valid_accuracy=best_accuracy,
        train_seconds=elapsed,
        tokens_per_second=tokens_seen / elapsed if elapsed > 0 else 0.0,
        resumed_from_epoch=resumed_from,
    )
