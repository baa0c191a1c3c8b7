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
from typing import Any, Callable, Iterator

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


def _nodes(node: Any, match: Callable[[Any], bool]) -> Iterator[Any]:
    """Every node of a parsed JSON tree that ``match`` accepts, depth first."""
    if match(node):
        yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _nodes(child, match)


def test_exp_run_reruns_only_the_changed_cells_and_exp_show_compares_them(tiny: tuple[DvcProject, str]) -> None:
    """The README's worked example on the tiny profile: an experiment without GPFQ next to the committed baseline."""
    project, _ = tiny
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "baseline results")
    ran = ran_stages(project.dvc("exp", "run", "-n", "no-gpfq", "-S", "calibration.final_layer_algorithm=none"))
    assert "calibrate@dbpedia-generative-4-class_conditional" in ran and "noise_train_calibrate@dbpedia-4" in ran
    untouched = [s for s in ran if s.split("@")[0] in {"download", "tokenize", "train", "evaluate", "quantize", "activation_ranges", "noise_train"}]
    assert untouched == [], untouched

    cell = "metrics/calibrate/dbpedia/generative/w4/class_conditional.json"
    shown = json.loads(project.dvc("exp", "show", "--json"))
    baseline = next(entry for entry in shown if entry.get("rev") != "workspace")  # the committed HEAD
    experiment = next(_nodes(baseline.get("experiments"), lambda n: isinstance(n, dict) and n.get("name") == "no-gpfq"))
    metrics = {}
    for label, tree in (("baseline", baseline["data"]), ("no-gpfq", experiment)):
        files = next(_nodes(tree, lambda n: isinstance(n, dict) and cell in n and isinstance(n[cell], dict) and "data" in n[cell]))
        metrics[label] = files[cell]["data"]
    assert metrics["baseline"]["final_layer_algorithm"] == "gpfq"
    assert metrics["no-gpfq"]["final_layer_algorithm"] == "none"
    assert "gpfq_changed_weight_fraction" in metrics["baseline"]
