"""Noise evaluation through the real stage code on a tiny trained model (Figure 9's pipeline)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_training import clone_project, evaluate, small_params, train

from lstm_ptq.artifacts import read_json

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


def test_noise_stage_rejects_unknown_noise_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "stages/noisy_test.py"), "ag_news", "cosmic_rays", "--root", str(tmp_path), "--params", str(REPO / "params.yaml")],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "cosmic_rays" in result.stderr and "Traceback" not in result.stderr
