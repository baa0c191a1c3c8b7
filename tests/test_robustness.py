"""Noise evaluation through the real stage code on a tiny trained model (Figure 9's pipeline)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_training import clone_project, evaluate, small_params, train

from lstm_ptq.artifacts import read_json
from lstm_ptq.errors import DataError
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.preprocess import load_split
from lstm_ptq.robustness import NoisePredictions, load_noise_predictions, save_noise_predictions

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_float_noise_stage_on_a_tiny_model(small_ag_news: Path, tmp_path: Path, model_type: str) -> None:
    params = small_params(learning_rate=0.01)
    params["noise"] = {"levels": [0, 0.05, 0.2]}
    params["grid"]["noise_models"] = ["uniform_substitution"]
    params["tokenize"].update({"lowercase": True, "max_length": 40})  # as the fixture tokenized
    root = clone_project(small_ag_news, tmp_path / "project", params)
    train(params, "ag_news", model_type, root)
    clean = evaluate(params, "ag_news", model_type, root)

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for script, extra in (("noisy_test.py", []), ("noise_float.py", [model_type])):
        command = [
            sys.executable,
            str(REPO / "stages" / script),
            "ag_news",
            *extra,
            "uniform_substitution",
            "--params",
            str(root / "params.yaml"),
            "--root",
            str(root),
        ]
        subprocess.run(command, env=env, check=True, capture_output=True)

    metrics = read_json(root / "metrics/noise/float/ag_news" / model_type / "uniform_substitution.json")
    assert metrics["documents"] == clean["documents"] == 400
    assert metrics["accuracy@0"] == clean["accuracy"]  # level 0 is exactly the clean test split
    with open(root / "plots/noise/float/ag_news" / model_type / "uniform_substitution.csv", newline="") as handle:
        curve = list(csv.DictReader(handle))
    assert [float(r["noise_level"]) for r in curve] == [0, 0.05, 0.2]
    oov = [float(r["oov_rate"]) for r in curve]
    change = [float(r["char_change_rate"]) for r in curve]
    assert oov[0] < oov[1] < oov[2] and change[0] == 0.0 and 0.15 < change[2] < 0.25
    assert metrics["accuracy@0.2"] < metrics["accuracy@0"]  # a fifth of all characters replaced must hurt
    # every prediction is kept, so the findings can pair models on the same documents
    paths = ProjectPaths(root)
    labels = load_split(paths.tokenized("ag_news"), "test").labels
    noisy = load_noise_predictions(paths.float_noise_predictions("ag_news", model_type, "uniform_substitution"), len(labels), 4)
    assert noisy.predictions.shape == (3, 400) and noisy.documents.tolist() == list(range(400))
    for level in (0, 0.05, 0.2):
        assert noisy.correct(labels, [level]).mean() == pytest.approx(metrics[f"accuracy@{level:g}"], abs=1e-6)
    both = noisy.correct(labels, [0.05, 0.2])
    assert both.mean() == pytest.approx((metrics["accuracy@0.05"] + metrics["accuracy@0.2"]) / 2, abs=1e-6)


def test_noise_predictions_pick_levels_and_documents_and_refuse_what_they_do_not_hold(tmp_path: Path) -> None:
    noisy = NoisePredictions(np.array([0.0, 0.1]), np.array([2, 5, 7]), np.array([[1, 0, 1], [0, 0, 1]]))
    labels = np.array([9, 9, 1, 9, 9, 0, 9, 0])
    assert noisy.correct(labels, [0.0]).tolist() == [True, True, False]
    assert noisy.correct(labels, [0.0, 0.1], np.array([7, 2])).tolist() == [0.0, 0.5]
    with pytest.raises(DataError, match="no noise level 0.2"):
        noisy.correct(labels, [0.2])
    with pytest.raises(DataError, match=r"no prediction for test rows \[3\]"):
        noisy.correct(labels, [0.0], np.array([3]))
    path = tmp_path / "noise.npz"
    save_noise_predictions(path, noisy)
    assert load_noise_predictions(path, 8, 2).documents.tolist() == [2, 5, 7]
    with pytest.raises(DataError, match=r"test rows outside 0\.\.5"):
        load_noise_predictions(path, 6, 2)
    with pytest.raises(DataError, match=r"predicted labels outside 0\.\.0"):
        load_noise_predictions(path, 8, 1)


def test_noise_stage_rejects_unknown_noise_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "stages/noisy_test.py"), "ag_news", "cosmic_rays", "--root", str(tmp_path), "--params", str(REPO / "params.yaml")],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "cosmic_rays" in result.stderr and "Traceback" not in result.stderr
