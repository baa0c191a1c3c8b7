"""Training: determinism, resume after a kill, early stopping, outputs, parameter errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lstm_ptq.artifacts import read_json
from lstm_ptq.errors import ParamError
from lstm_ptq.models import load_state_dict
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.float import evaluate_stage, train_stage
from lstm_ptq.preprocess import load_split
from lstm_ptq.settings import EvaluateSettings, ModelSettings, TrainSettings, load_params
from lstm_ptq.training import epoch_batches

REPO = Path(__file__).resolve().parents[1]


def small_params(**train_overrides) -> dict:
    params = load_params(REPO / "params.yaml")
    params["trees"] = {}  # the main tree only (the tests that need a tree declare their own)
    params["model"] = {"embedding_dim": 24, "hidden_size": 24, "num_layers": 1, "label_embedding_dim": 8}
    # the shared keys below govern the discriminative model; the generative one keeps a 2-epoch override
    params["train"].update(
        {"max_epochs": 3, "patience": 5, "num_threads": 1, "train_accuracy_rows": 200, "discriminative": {}, "generative": {"max_epochs": 2}}
    )
    params["train"].update(train_overrides)
    return params


def train(params: dict, dataset: str, model_type: str, root: Path) -> dict:
    """The train stage with the settings its script reads from ``params``."""
    return train_stage(dataset, model_type, ModelSettings.from_params(params), TrainSettings.from_params(params, model_type), ProjectPaths(root))


def evaluate(params: dict, dataset: str, model_type: str, root: Path) -> dict:
    """The evaluate stage with the settings its script reads from ``params``."""
    return evaluate_stage(dataset, model_type, EvaluateSettings.from_params(params, with_prior=True), ProjectPaths(root))


def clone_project(source: Path, target: Path, params: dict) -> Path:
    shutil.copytree(source / "data", target / "data")
    (target / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return target


def test_epoch_batches_depend_only_on_seed_and_epoch() -> None:
    params = TrainSettings(32, 1e-3, 3, 2, 5.0, seed=3, num_threads=1, bucket_batches=4, train_accuracy_rows=10)
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    first, again, other = epoch_batches(lengths, params, 1), epoch_batches(lengths, params, 1), epoch_batches(lengths, params, 2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sorted(np.concatenate(first).tolist()) == list(range(1000))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    spread = np.mean([np.ptp(lengths[b]) for b in first])
    assert spread < np.ptp(lengths) / 4  # bucketing keeps similar lengths together


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_training_is_deterministic_and_learns(small_ag_news: Path, tmp_path: Path, model_type: str) -> None:
    # a larger step than the paper's 1e-3 so a tiny model on 1,200 rows learns within 3 epochs
    params = small_params(learning_rate=0.01)
    roots = [clone_project(small_ag_news, tmp_path / name, params) for name in ("a", "b")]
    metrics = [train(params, "ag_news", model_type, root) for root in roots]
    states = [load_state_dict(root / "models/float/ag_news" / model_type / "model.pt") for root in roots]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert metrics[0]["best_valid_accuracy"] == metrics[1]["best_valid_accuracy"]
    assert metrics[0]["best_valid_accuracy"] > 0.45, metrics[0]  # chance is 0.25 on 4 balanced classes
    curve = (roots[0] / "plots/train/ag_news" / f"{model_type}.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,train_accuracy,valid_loss,valid_accuracy"
    assert len(curve) == 1 + metrics[0]["epochs_run"]
    assert not (roots[0] / ".cache/train" / f"ag_news-{model_type}.pt").exists()

    result = evaluate(params, "ag_news", model_type, roots[0])
    test = load_split(roots[0] / "data/tokenized/ag_news", "test")
    assert result["documents"] == len(test) == 400
    confusion = (roots[0] / "plots/confusion/ag_news" / f"{model_type}.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 401
    agree = sum(a == p for a, p in (line.split(",") for line in confusion[1:])) / 400
    assert agree == pytest.approx(result["accuracy"], abs=1e-6)
    assert set(result["per_class_accuracy"]) == {"World", "Sports", "Business", "Sci/Tech"}


def test_early_stopping_respects_patience(small_ag_news: Path, tmp_path: Path) -> None:
    # a learning rate this small cannot improve validation accuracy for long: patience 1 stops early
    params = small_params(max_epochs=8, patience=1, learning_rate=1e-7)
    root = clone_project(small_ag_news, tmp_path / "p", params)
    metrics = train(params, "ag_news", "discriminative", root)
    assert metrics["epochs_run"] == metrics["best_epoch"] + 1 < 8


def test_killed_training_resumes_to_the_same_model(small_ag_news: Path, tmp_path: Path) -> None:
    params = small_params(max_epochs=4)
    reference = clone_project(small_ag_news, tmp_path / "reference", params)
    train(params, "ag_news", "discriminative", reference)

    root = clone_project(small_ag_news, tmp_path / "killed", params)
    command = [sys.executable, str(REPO / "stages/train.py"), "ag_news", "discriminative", "--params", str(root / "params.yaml"), "--root", str(root)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    resume = root / ".cache/train/ag_news-discriminative.pt"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert resume.exists(), "training never wrote a resume state"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (root / "models/float/ag_news/discriminative/model.pt").exists()  # never a half-written model

    subprocess.run(command, env=env, check=True, capture_output=True)
    metrics = read_json(root / "metrics/train/ag_news/discriminative.json")
    assert metrics["epochs_run"] == 4
    resumed = load_state_dict(root / "models/float/ag_news/discriminative/model.pt")
    expected = load_state_dict(reference / "models/float/ag_news/discriminative/model.pt")
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("batch_size", 0, "train.batch_size"), ("learning_rate", "fast", "train.learning_rate"), ("max_epochs", True, "train.max_epochs")],
)
def test_bad_train_params_name_the_key(key: str, value: object, message: str) -> None:
    params = small_params(**{key: value})
    with pytest.raises(ParamError, match=message):
        TrainSettings.from_params(params, "discriminative")


def test_per_model_overrides_win_and_errors_name_their_own_path() -> None:
    params = small_params(max_epochs=7, generative={"max_epochs": 2, "patience": 1})
    assert TrainSettings.from_params(params, "discriminative").max_epochs == 7
    generative = TrainSettings.from_params(params, "generative")
    assert (generative.max_epochs, generative.patience, generative.batch_size) == (2, 1, params["train"]["batch_size"])
    with pytest.raises(ParamError, match=r"train\.generative\.max_epochs: 0 must be >= 1"):
        TrainSettings.from_params(small_params(generative={"max_epochs": 0}), "generative")
    with pytest.raises(ParamError, match=r"train\.generative\.learning_rate: 'x' is not a float"):
        TrainSettings.from_params(small_params(generative={"learning_rate": "x"}), "generative")
    with pytest.raises(ParamError, match=r"train\.generative: .* not a mapping"):
        TrainSettings.from_params(small_params(generative=[1]), "generative")


def test_train_stage_cli_reports_unknown_model_type(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "stages/train.py"), "ag_news", "bayesian", "--root", str(tmp_path), "--params", str(REPO / "params.yaml")],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown model 'bayesian'" in result.stderr and "Traceback" not in result.stderr
