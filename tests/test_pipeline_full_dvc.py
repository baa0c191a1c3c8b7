"""The whole pipeline through the real ``dvc`` CLI on a tiny params profile: DBPedia only, one bit
width, one calibration scheme, one noise model at two levels, small models.

It checks the wiring that the stage-function tests cannot: every stage of ``dvc.yaml`` (the PTQ grid,
the noise stages and the noise-trained variant tree included) resolves, runs once in dependency order,
writes its outputs, and a second ``dvc repro`` runs nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from dvc_project import DvcProject, ran_stages, snapshot_project

pytestmark = pytest.mark.slow


def tiny_profile(params: dict) -> dict:
    params["datasets"] = ["dbpedia"]
    params["tokenize"].update({"max_vocab_size": 400, "max_length": 24})
    params["model"] = {"embedding_dim": 8, "hidden_size": 8, "num_layers": 1, "label_embedding_dim": 4}
    params["train"].update({"max_epochs": 1, "patience": 1, "train_accuracy_rows": 100, "discriminative": {}, "generative": {"max_epochs": 1}})
    params["noise"].update({"levels": [0, 0.1], "models": ["uniform_substitution"]})
    params["quantization"]["bit_widths"] = [4]
    params["calibration"].update({"schemes": ["class_conditional"], "gpfq_documents": 64})
    params["noise_quantized"].update({"schemes": ["class_conditional"], "test_documents": 200})
    params["noise_training"].update({"datasets": ["dbpedia"]})
    return params


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[DvcProject, str]:
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("tiny"), snapshot)
    project.set_params(tiny_profile(project.params()))
    project.run("git", "commit", "-q", "-am", "tiny profile")
    return project, project.dvc("repro")


def test_every_stage_runs_once_in_dependency_order(tiny: tuple[DvcProject, str]) -> None:
    project, output = tiny
    listed = set(project.dvc("stage", "list", "--name-only").split())
    ran = ran_stages(output)
    assert sorted(ran) == sorted(listed) and len(listed) == 32
    order = {name: i for i, name in enumerate(ran)}
    for before, after in [
        ("calibrate@dbpedia-generative-4-class_conditional", "noise_quantized@dbpedia-generative-4-class_conditional-uniform_substitution"),
        ("noisy_test@dbpedia-uniform_substitution", "noise_train_data@dbpedia"),
        ("noise_train@dbpedia", "noise_train_calibrate@dbpedia-4"),
        ("noise_train_noise_quantized@dbpedia-4", "figure16"),
        ("noise_quantized@dbpedia-generative-4-class_conditional-uniform_substitution", "noise_report"),
    ]:
        assert order[before] < order[after], (before, after)


def test_outputs_of_both_trees_exist(tiny: tuple[DvcProject, str]) -> None:
    project, _ = tiny
    root = project.root
    variant = root / "variants/noise_trained"
    for path in [
        root / "metrics/ptq_grid.csv",
        root / "metrics/noise_grid.csv",
        root / "plots/noise/figures/figure10_class_conditional_uniform_substitution.png",
        root / "plots/noise/figure16/figure16.png",
        variant / "models/float/dbpedia/generative/model.pt",
        variant / "models/calibrated/dbpedia/generative/w4/class_conditional/model.pt",
    ]:
        assert path.is_file() and path.stat().st_size > 0, path
    cell = json.loads((variant / "metrics/noise/quantized/dbpedia/generative/w4/class_conditional/uniform_substitution.json").read_text())
    assert cell["documents"] == 200
    with open(root / "plots/noise/figure16/figure16_dbpedia.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["bit_width"] for r in rows] == ["4"] and float(rows[0]["noise_trained"]) == cell["accuracy@0.1"]


def test_second_repro_runs_nothing_and_plots_render(tiny: tuple[DvcProject, str], tmp_path: Path) -> None:
    project, _ = tiny
    assert ran_stages(project.dvc("repro")) == []
    assert json.loads(project.dvc("status", "--json")) == {}
    project.dvc("plots", "show", "-o", str(tmp_path / "plots"))
    assert (tmp_path / "plots" / "index.html").stat().st_size > 0
