"""The whole pipeline through the real ``dvc`` CLI on a tiny params profile: DBPedia only, one bit
width, the two calibration schemes the analysis compares, one noise model at two levels, small models.

It checks the wiring that the stage-function tests cannot: every stage of ``dvc.yaml`` (the PTQ grid,
the noise stages and the noise-trained variant tree included) resolves, runs once in dependency order,
writes its outputs, and a second ``dvc repro`` runs nothing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dvc_project import DvcProject, ran_stages, snapshot_project, stage_name, write_params

pytestmark = pytest.mark.slow


def tiny_profile(params: dict) -> dict:
    params["grid"].update(
        {
            "datasets": ["dbpedia"],
            "bit_widths": [4],
            "calibration_schemes": ["class_conditional", "class_unconditional"],
            "noise_models": ["uniform_substitution"],
            "noise_quantized_schemes": ["class_conditional"],
            "noise_quantized_noise_models": ["uniform_substitution"],
            "noise_trained_datasets": ["dbpedia"],
        }
    )
    params["tokenize"].update({"max_vocab_size": 400, "max_length": 24})
    params["model"] = {"embedding_dim": 8, "hidden_size": 8, "num_layers": 1, "label_embedding_dim": 4}
    params["train"].update(
        {"max_epochs": 1, "patience": 1, "train_accuracy_rows": 100, "num_threads": 1, "discriminative": {}, "generative": {"max_epochs": 1}}
    )
    params["noise"]["levels"] = [0, 0.1]
    params["final_layer"]["documents"] = 64
    params["noise_quantized"]["test_documents"] = 200
    params["analysis"].update({"documents": 100, "ks_sample_size": 5000, "kde_bit_width": 4, "kde_points": 64})
    return params


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[DvcProject, str]:
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("tiny"), snapshot)
    project.set_profile(tiny_profile(project.params()))
    project.run("git", "commit", "-q", "-am", "tiny profile")
    return project, project.dvc("repro")


def test_every_stage_runs_once_in_dependency_order(tiny: tuple[DvcProject, str]) -> None:
    project, output = tiny
    listed = {stage_name(address) for address in project.dvc("stage", "list", "--all", "--name-only").split()}
    ran = ran_stages(output)
    assert sorted(ran) == sorted(listed) and len(listed) == 45
    order = {name: i for i, name in enumerate(ran)}
    for before, after in [
        ("calibrate@dbpedia-generative-4-class_conditional", "noise_quantized@dbpedia-generative-4-class_conditional-uniform_substitution"),
        ("noisy_test@dbpedia-uniform_substitution", "noise_train_data@dbpedia"),
        ("noise_train@dbpedia", "noise_train_calibrate@dbpedia-4"),
        ("noise_train_noise_quantized@dbpedia-4", "figure16"),
        ("noise_quantized@dbpedia-generative-4-class_conditional-uniform_substitution", "noise_report"),
        ("calibrate@dbpedia-discriminative-4-class_conditional", "summary"),
        ("calibrate@dbpedia-generative-4-class_unconditional", "ks_analysis@dbpedia-generative"),
        ("noisy_test@dbpedia-uniform_substitution", "token_losses@dbpedia"),
        ("ks_analysis@dbpedia-discriminative", "analysis_report"),
        ("per_class@dbpedia-generative", "analysis_report"),
        ("token_losses@dbpedia", "findings"),
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


def test_analysis_and_findings_outputs(tiny: tuple[DvcProject, str]) -> None:
    """Section 6's stages on the tiny profile: every KS comparison with its p-value and sample sizes, the
    bootstrapped KS gaps, Figure 15's densities and shifts, the per-class tables, every figure, and a findings
    report with a computed verdict for each claim the tiny grid can judge."""
    project, _ = tiny
    root = project.root
    for model_type in ("discriminative", "generative"):
        with open(root / f"metrics/analysis/dbpedia/{model_type}/ks.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert {(r["figure"], r["layer"], r["scheme"]) for r in rows} == {
            ("12", "final_layer_weights", "none"),
            ("12", "final_layer_weights", "class_conditional"),
            ("12", "final_layer_weights", "class_unconditional"),
            ("13", "embedding", "class_unconditional"),
            ("13", "lstm", "class_unconditional"),
            ("14", "final_layer_outputs", "class_conditional"),
            ("14", "final_layer_outputs", "class_unconditional"),
        }
        for r in rows:
            assert 0.0 <= float(r["ks_statistic"]) <= 1.0 and 0.0 <= float(r["p_value"]) <= 1.0
            assert 0 < int(r["n_a"]) <= 5000 and int(r["n_a"]) <= int(r["n_a_total"])
        with open(root / f"metrics/analysis/dbpedia/{model_type}/ks_gaps.csv", newline="") as handle:
            gaps = list(csv.DictReader(handle))
        assert sorted(g["figure"] for g in gaps) == ["12", "13", "14"]
        assert all(float(g["low"]) <= float(g["difference"]) <= float(g["high"]) for g in gaps)
        # the difference is that of the two statistics the row reports (on its own samples; rounded to 6 places)
        assert all(abs(float(g["first_ks"]) - float(g["second_ks"]) - float(g["difference"])) < 3e-6 for g in gaps)
        with open(root / f"metrics/analysis/dbpedia/{model_type}/per_class.csv", newline="") as handle:
            per_class = list(csv.DictReader(handle))
        assert len(per_class) == 2 * 14  # two schemes x the 14 DBPedia classes
    losses = json.loads((root / "metrics/analysis/dbpedia/generative/token_losses.json").read_text())
    assert set(losses["conditions"]) == {"float", "class_conditional", "class_unconditional", "class_conditional, uniform_substitution 0.1"}
    assert set(losses["shifts"]) == {
        "class_conditional - float",
        "class_unconditional - float",
        "class_unconditional - class_conditional",
        "class_conditional, uniform_substitution 0.1 - class_conditional (document means)",
    }
    for name in ("figure12", "figure13", "figure14", "figure15", "per_class"):
        assert (root / f"plots/analysis/{name}.png").stat().st_size > 0, name
    with open(root / "plots/analysis/figure15_dbpedia_loss.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["x", "float", "class_conditional", "class_unconditional", "class_conditional, uniform_substitution 0.1"]
    report = (root / "reports/findings.md").read_text()
    with open(root / "reports/findings.csv", newline="") as handle:
        judged = list(csv.DictReader(handle))
    assert {r["claim"] for r in judged} == {"C1", "C2", "C3", "C4", "C5", "C7", "C9", "C10", "C11", "C12", "C13", "C14", "C15"}
    assert {r["verdict"] for r in judged} <= {"reproduced", "contradicted", "inconclusive"}
    for key in ("C1", "C6", "C8", "C13", "C15"):
        assert f"### {key} " in report
    assert "Not in this grid: the claim needs class_conditional and classes_1" in report  # C6 on a two-scheme grid
    assert "![C7](../plots/analysis/figure12.png)" in report


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
    """The README's worked example on the tiny profile: an experiment without GPFQ next to the committed
    baseline; ``dvc exp show`` lists the params and the summary metrics only (not every cell's JSON)."""
    project, _ = tiny
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "baseline results")
    # the summary and the variant's cell: every calibrate cell of both trees, not the reports after them
    ran = ran_stages(
        project.dvc("exp", "run", "-n", "no-gpfq", "-S", "final_layer.algorithm=none", "summary", project.address("noise_train_calibrate@dbpedia-4"))
    )
    assert "calibrate@dbpedia-generative-4-class_conditional" in ran and "noise_train_calibrate@dbpedia-4" in ran
    untouched = [s for s in ran if s.split("@")[0] in {"download", "tokenize", "train", "evaluate", "quantize", "activation_ranges", "noise_train"}]
    assert untouched == [], untouched
    cell = json.loads((project.root / "metrics/calibrate/dbpedia/generative/w4/class_conditional.json").read_text())
    assert cell["final_layer_algorithm"] == "none"  # the workspace holds the experiment's results

    shown = json.loads(project.dvc("exp", "show", "--json"))
    baseline = next(entry for entry in shown if entry.get("rev") != "workspace")  # the committed HEAD
    experiment = next(_nodes(baseline.get("experiments"), lambda n: isinstance(n, dict) and n.get("name") == "no-gpfq"))
    columns = {}
    for label, tree in (("baseline", baseline["data"]), ("no-gpfq", experiment)):
        params = next(_nodes(tree, lambda n: isinstance(n, dict) and "params.yaml" in n))["params.yaml"]["data"]
        metrics = next(_nodes(tree, lambda n: isinstance(n, dict) and "metrics/summary.json" in n))
        columns[label] = (params["final_layer"]["algorithm"], metrics)
    assert columns["baseline"][0] == "gpfq" and columns["no-gpfq"][0] == "none"
    for _, metrics in columns.values():
        assert set(metrics) == {"metrics/summary.json"}  # the only metric file
        summary = metrics["metrics/summary.json"]["data"]
        assert set(summary["dbpedia"]["generative"]) == {"float", "w4"} and 0.0 <= summary["dbpedia"]["generative"]["w4"]["class_conditional"] <= 1.0

    # back to the committed baseline (the experiment left the reports after its targets out of date)
    project.run("git", "reset", "-q", "--hard")
    project.dvc("checkout", "-q")
    assert json.loads(project.dvc("status", "--json")) == {}


UPSTREAM = {"download", "tokenize", "train", "evaluate", "noisy_test", "noise_float", "noise_train_data", "noise_train", "noise_train_evaluate"}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("quantization.cell_state_bit_width", 16, {"quantize", "activation_ranges", "calibrate", "noise_quantized", "ks_analysis", "token_losses", "findings"}),
        ("quantization.gate_bit_width", 8, {"quantize", "activation_ranges", "calibrate", "noise_quantized", "ks_analysis", "token_losses", "findings"}),
        ("calibration.decoder_feeding", "true_label", {"calibration_sets", "activation_ranges", "calibrate", "findings"}),
    ],
)
def test_lstm_precision_and_decoder_feeding_are_tracked_settings(tiny: tuple[DvcProject, str], key: str, value: object, expected: set[str]) -> None:
    """Each setting of the study's axes (issue 10) is a params entry DVC tracks: changing it makes the
    quantize/calibrate cells that read it out of date, and nothing upstream of them."""
    project, _ = tiny
    params = project.params()
    section, name = key.split(".")
    original = params[section][name]
    params[section][name] = value
    project.set_params(params)
    try:
        status = project.dvc("status", "--json")
        # DVC with the project's speed-ups (what ./run dvc runs) reports what DVC as installed reports.
        assert json.loads(status) == json.loads(project.plain_dvc("status", "--json"))
        changed = set(json.loads(status))
    finally:
        params[section][name] = original
        project.set_params(params)
    kinds = {stage_name(stage).split("@")[0] for stage in changed}
    assert {kind for kind in kinds if not kind.startswith("noise_train")} == expected, changed
    assert not kinds & UPSTREAM, changed
    assert json.loads(project.dvc("status", "--json")) == {}


def test_exp_run_with_a_wide_state_and_predicted_label_feeding(tiny: tuple[DvcProject, str]) -> None:
    """The settings run end to end through ``dvc exp run -S`` (predicted_label feeding needs the
    calibration_sets stage to store the float model's predictions), and the grid CSV carries them."""
    project, _ = tiny
    settings = ["-S", "quantization.cell_state_bit_width=16", "-S", "quantization.gate_bit_width=8", "-S", "calibration.decoder_feeding=predicted_label"]
    settings += ["-S", "grid.calibration_schemes=[class_conditional]"]  # one scheme is enough here
    ran = ran_stages(project.dvc("exp", "run", "-n", "wide", *settings, "ptq_report"))  # the grid and its report only
    assert "calibrate@dbpedia-generative-4-class_conditional" in ran and "calibration_sets@dbpedia-generative" in ran
    assert [s for s in ran if s.split("@")[0] in UPSTREAM] == []
    with open(project.root / "metrics/ptq_grid.csv", newline="") as handle:
        rows = {row["model_type"]: row for row in csv.DictReader(handle)}
    assert (rows["generative"]["cell_state_bit_width"], rows["generative"]["gate_bit_width"], rows["generative"]["decoder_feeding"]) == (
        "16",
        "8",
        "predicted_label",
    )
    assert rows["discriminative"]["decoder_feeding"] == "" and rows["discriminative"]["cell_state_bit_width"] == "16"


NEW_SCHEME = """
def _first_rows(ctx: CalibrationContext) -> np.ndarray:
    return np.arange(ctx.size)


SCHEMES["first_rows"] = Scheme(_first_rows)
"""


def test_a_new_calibration_scheme_is_one_registry_entry_and_a_params_edit(tiny: tuple[DvcProject, str]) -> None:
    """Adding a scheme touches one place in the code: a registry entry appended to calibration.py and
    its name in ``grid.calibration_schemes`` give its calibrate cells, its grid rows and its Figure 11
    series, with nothing else edited (the tiny project, after the experiment above)."""
    project, _ = tiny
    params = project.params()
    params["grid"]["calibration_schemes"] = ["class_conditional", "first_rows"]
    project.set_params(params)
    with open(project.root / "src/lstm_ptq/calibration.py", "a", encoding="utf-8") as handle:
        handle.write(NEW_SCHEME)
    ran = ran_stages(project.dvc("repro", "ptq_report"))
    assert "calibrate@dbpedia-generative-4-first_rows" in ran and "activation_ranges@dbpedia-discriminative-first_rows" in ran
    assert [s for s in ran if s.split("@")[0] in {"download", "tokenize", "train", "evaluate"}] == []
    cell = json.loads((project.root / "metrics/calibrate/dbpedia/generative/w4/first_rows.json").read_text())
    assert cell["calibration_scheme"] == "first_rows" and 0.0 <= cell["accuracy"] <= 1.0
    with open(project.root / "metrics/ptq_grid.csv", newline="") as handle:
        schemes = {row["calibration_scheme"] for row in csv.DictReader(handle)}
    assert schemes == {"class_conditional", "first_rows"}
    with open(project.root / "plots/ptq/figure11_dbpedia_generative.csv", newline="") as handle:
        assert "first_rows" in next(csv.reader(handle))


def test_trees_feed_the_figures_and_the_report(tiny: tuple[DvcProject, str]) -> None:
    """Two trees on the tiny project (after the tests above): a seed tree, pooled with the main tree in the
    report and drawn as bars over seeds in Figures 6-8, and a setting tree (the generative decoder fed the
    true label), judged beside the main tree and listed in the accuracy-by-setting table. Only the trees'
    stages and the reports after them run; the main tree's float models are not retrained."""
    project, _ = tiny
    params = project.params()
    params["grid"]["calibration_schemes"] = ["class_conditional", "class_unconditional"]
    params["trees"] = {
        "seed_7": {"rerun_from": "train", "params": {"seed": 7}},
        "fed_true": {"rerun_from": "calibration_sets", "params": {"calibration": {"decoder_feeding": "true_label"}, "grid": {"model_types": ["generative"]}}},
    }
    write_params(project.root, params)
    ran = ran_stages(project.dvc("repro", "findings", "ptq_report"))
    # each tree's stages live in its own dvc.yaml (and lock), addressed by that file's path
    assert project.address("seed_7_train@dbpedia-generative") == "variants/seed_7/dvc.yaml:seed_7_train@dbpedia-generative"
    assert "seed_7_train@dbpedia-generative" in ran and "fed_true_calibrate@dbpedia-generative-4-class_conditional" in ran
    assert not any(s.startswith(("train@", "download", "tokenize", "fed_true_train", "seed_7_noise", "fed_true_noise")) for s in ran), ran
    assert (project.root / "variants/seed_7/dvc.lock").is_file() and "seed_7_" not in (project.root / "dvc.lock").read_text(encoding="utf-8")
    with open(project.root / "metrics/ptq_grid_seeds.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert {row["seeds"] for row in cells} == {"2"}
    assert all(row["per_seed_accuracy"].split(" ")[1].startswith("7:") for row in cells)
    assert all(float(row["accuracy_low"]) <= float(row["accuracy_mean"]) <= float(row["accuracy_high"]) for row in cells)
    with open(project.root / "metrics/ptq_grid.csv", newline="") as handle:
        grid = list(csv.DictReader(handle))
    assert all(float(r["accuracy_low"]) <= float(r["accuracy"]) <= float(r["accuracy_high"]) for r in grid)
    report = (project.root / "reports/findings.md").read_text(encoding="utf-8")
    for heading in ("## Across training seeds", "## Under other settings (trees of params.yaml)", "## Accuracy by setting at low bit widths"):
        assert heading in report
    assert "7 (`seed_7`: bit widths 4)" in report
    assert "| `fed_true` | `calibration.decoder_feeding`: true_label; `grid.model_types`: ['generative'] | generative | 4 |" in report
    with open(project.root / "reports/findings.csv", newline="") as handle:
        trees = {row["tree"] for row in csv.DictReader(handle)}
    assert {"main", "seed_7", "fed_true"} <= trees
