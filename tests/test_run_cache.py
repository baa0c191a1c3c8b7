"""Sharing work between machines through one DVC remote: ``dvc push --run-cache``, ``dvc repro --pull``
and a committed ``dvc.lock``, with the real ``dvc`` CLI (3.67.1) in git clones of one temporary repository
and a local directory remote. The commands are those of docs/scaling.md.

The tiny profile cut to the discriminative model: ``ptq_report`` needs 12 stages. Two workers split the
PTQ grid by calibration scheme with ``dvc repro --glob`` and push outputs and run-cache; a third clone,
with the code and params but no ``dvc.lock``, runs ``dvc repro --pull ptq_report``, commits its
``dvc.lock`` and git-tracked outputs and pushes; a fourth, a clone of that commit, pulls and runs nothing.

What DVC 3.67.1 does, and what the tests hold it to:

* A stage restored from the run-cache prints ``Stage '<name>' is cached - skipping run, checking out
  outputs`` and its command does not run; a stage whose ``dvc.lock`` entry matches prints
  ``Stage '<name>' didn't change, skipping``.
* DVC writes a run-cache entry only for a stage none of whose ``outs`` has ``cache: false`` (``Stage.run``
  passes ``run_cache=False`` otherwise; entries under a stage's ``metrics:`` or ``plots:`` are exempt;
  treeverse/dvc#8738). In this dvc.yaml that leaves download, calibration_sets, quantize and
  activation_ranges. fingerprints, tokenize, train, evaluate, calibrate and ptq_report keep small results
  in git as ``cache: false`` outputs, so a clone without ``dvc.lock`` runs them again; training is
  deterministic, so the rerun rebuilds the same model and the entries of the stages after it still match.
  The final clone therefore recomputes every calibrate cell: splitting the grid spares it only the
  run-cached stages.
* An entry is found only for the same command, dependency hashes (code fingerprints included) and params.
* An entry alone restores nothing: the outputs must be in the local cache too. ``dvc pull --run-cache``
  on a clone without ``dvc.lock`` fetches the entries and no output; ``dvc repro --pull`` fetches both.
* With ``dvc.lock`` committed, nothing reruns. A plain ``dvc pull`` then fails (exit 1) because stages
  of dvc.yaml outside the target (noise, analysis) have no lock entry; ``--allow-missing`` pulls the rest.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dvc_project import DvcProject, dvc_files, hash_files, isolated_env, ran_stages, snapshot_project, stage_name
from test_pipeline_full_dvc import tiny_profile

pytestmark = pytest.mark.slow

CC, UC = "class_conditional", "class_unconditional"
CELL = {scheme: f"calibrate@dbpedia-discriminative-4-{scheme}" for scheme in (CC, UC)}
RANGES = {scheme: f"activation_ranges@dbpedia-discriminative-{scheme}" for scheme in (CC, UC)}
SHARED = [  # what every calibrate cell needs besides its scheme's activation ranges
    "fingerprints",
    "download@dbpedia",
    "tokenize@dbpedia",
    "train@dbpedia-discriminative",
    "evaluate@dbpedia-discriminative",
    "calibration_sets@dbpedia-discriminative",
    "quantize@dbpedia-discriminative-4",
]
REPORT = "ptq_report"
DOWNLOAD = "download@dbpedia"
REPORT_CHAIN = {*SHARED, *RANGES.values(), *CELL.values(), REPORT}
# The stages of REPORT_CHAIN that DVC can restore from the run-cache; docs/scaling.md names the same ones.
RUN_CACHED = {"download@dbpedia", "calibration_sets@dbpedia-discriminative", "quantize@dbpedia-discriminative-4", *RANGES.values()}
# The outputs the report and its cells leave in the workspace, cached and git-tracked.
RESULTS = ("metrics/ptq_grid.csv", "metrics/calibrate", "models/calibrated", "models/activation_ranges", "models/float")

_RESTORED = re.compile(r"^Stage '([^']+)' is cached - skipping run, checking out outputs$", re.MULTILINE)
_UNCHANGED = re.compile(r"^Stage '([^']+)' didn't change, skipping$", re.MULTILINE)


def restored_stages(output: str) -> list[str]:
    """The stages a ``dvc repro`` output says it restored from the run-cache instead of running."""
    return [stage_name(address) for address in _RESTORED.findall(output)]


def unchanged_stages(output: str) -> list[str]:
    """The stages a ``dvc repro`` output says matched their ``dvc.lock`` entry."""
    return [stage_name(address) for address in _UNCHANGED.findall(output)]


def has_uncached_out(dvc_yaml: dict, stage: str) -> bool:
    """Whether the stage's ``outs`` (not ``metrics``/``plots``) has a ``cache: false`` entry: DVC then saves no run-cache entry."""
    outs = dvc_yaml["stages"][stage.split("@")[0]]["outs"]
    return any(isinstance(out, dict) and any(opts.get("cache") is False for opts in out.values()) for out in outs)


def small_profile(params: dict) -> dict:
    """``tiny_profile`` (one thread per stage) on the discriminative model only, with a smaller calibration set."""
    params = tiny_profile(params)
    params["grid"].update({"datasets": ["dbpedia"], "model_types": ["discriminative"], "bit_widths": [4], "calibration_schemes": [CC, UC]})
    params["calibration"]["fraction"] = 0.05
    return params


def clone(origin: DvcProject, base: Path) -> DvcProject:
    """Another machine: a ``git clone`` of ``origin`` (its HEAD and ``.dvc/config`` with the remote), an empty DVC cache."""
    repo = base / "repo"
    origin.run("git", "clone", "-q", str(origin.root), str(repo))
    project = DvcProject(repo, isolated_env(Path(origin.env["HOME"]), repo, origin.env["PYTHONHASHSEED"]))
    project.dvc("config", "--local", "core.site_cache_dir", str(base / "site_cache"))
    return project


def dvc_exit(project: DvcProject, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``dvc`` command whose failure is the expected outcome."""
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project.root, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@dataclass(frozen=True)
class Run:
    project: DvcProject
    output: str  # of its `dvc repro`


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> DvcProject:
    """The shared git repository: code, the small profile and the remote, no results."""
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("origin"), snapshot)
    project.set_profile(small_profile(project.params()))
    project.dvc("remote", "add", "-d", "storage", str(tmp_path_factory.mktemp("remote")))
    project.run("git", "commit", "-q", "-am", "small profile, remote")
    return project


@pytest.fixture(scope="module")
def dvc_yaml(origin: DvcProject) -> dict:
    """The stage definitions of every dvc.yaml of the project."""
    stages = {name: stage for path in dvc_files(origin.root) for name, stage in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"].items()}
    return {"stages": stages}


@pytest.fixture(scope="module")
def worker_cc(origin: DvcProject, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The first machine: the class-conditional cells, with everything upstream of them."""
    project = clone(origin, tmp_path_factory.mktemp("worker_cc"))
    output = project.dvc("repro", "--glob", project.address("calibrate@*-class_conditional"))
    project.dvc("push", "--run-cache")
    return Run(project, output)


@pytest.fixture(scope="module")
def worker_uc(origin: DvcProject, worker_cc: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The second machine, after the first pushed: the class-unconditional cells."""
    project = clone(origin, tmp_path_factory.mktemp("worker_uc"))
    output = project.dvc("repro", "--pull", "--glob", project.address("calibrate@*-class_unconditional"))
    project.dvc("push", "--run-cache")
    return Run(project, output)


@pytest.fixture(scope="module")
def reporter(origin: DvcProject, worker_cc: Run, worker_uc: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The final machine: code and params only, no dvc.lock; pulls what the workers pushed and builds the report,
    then commits dvc.lock and the git-tracked outputs and pushes."""
    project = clone(origin, tmp_path_factory.mktemp("reporter"))
    assert not dvc_files(project.root, "dvc.lock")
    output = project.dvc("repro", "--pull", REPORT)
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "results")
    project.dvc("push", "--run-cache")
    return Run(project, output)


def test_the_rule_marks_the_run_cached_stages(dvc_yaml: dict) -> None:
    """The stages the tests below expect restored are exactly those without a ``cache: false`` output."""
    assert {stage for stage in REPORT_CHAIN if not has_uncached_out(dvc_yaml, stage)} == RUN_CACHED
    assert CELL[CC] not in RUN_CACHED and REPORT not in RUN_CACHED


def test_each_worker_builds_only_its_own_cells(worker_cc: Run, worker_uc: Run) -> None:
    first = ran_stages(worker_cc.output)
    assert sorted(first) == sorted([*SHARED, RANGES[CC], CELL[CC]]) and restored_stages(worker_cc.output) == []
    built = worker_cc.project.root / "models/calibrated/dbpedia/discriminative/w4"
    assert {path.name for path in built.iterdir() if path.is_dir()} == {CC}

    # The second worker restores the first worker's run-cached stages and runs the rest of its part.
    second_ran, second_restored = ran_stages(worker_uc.output), restored_stages(worker_uc.output)
    assert sorted(second_restored) == sorted(stage for stage in SHARED if stage in RUN_CACHED)
    assert sorted(second_ran) == sorted([*(stage for stage in SHARED if stage not in RUN_CACHED), RANGES[UC], CELL[UC]])
    assert CELL[CC] not in worker_uc.output and RANGES[CC] not in worker_uc.output
    # Training is deterministic: the second worker's rerun of train rebuilt the first worker's model, or
    # calibration_sets and quantize, whose run-cache keys hash that model, would not have been restored.
    assert hash_files(worker_uc.project.root, "models/float") == hash_files(worker_cc.project.root, "models/float")


def test_clone_without_lock_restores_exactly_the_run_cached_stages(reporter: Run, worker_cc: Run, worker_uc: Run) -> None:
    ran, restored = ran_stages(reporter.output), restored_stages(reporter.output)
    assert sorted(restored) == sorted(RUN_CACHED)  # both workers' activation ranges among them
    assert sorted(ran) == sorted(REPORT_CHAIN - RUN_CACHED)  # every calibrate cell is computed again
    assert unchanged_stages(reporter.output) == []
    # The recomputed cells equal the workers' (the same code, params and inputs).
    for scheme, worker in ((CC, worker_cc), (UC, worker_uc)):
        cell = f"metrics/calibrate/dbpedia/discriminative/w4/{scheme}.json"
        assert hash_files(reporter.project.root, cell) == hash_files(worker.project.root, cell)
        ranges = f"models/activation_ranges/dbpedia/discriminative/{scheme}"
        assert hash_files(reporter.project.root, ranges) == hash_files(worker.project.root, ranges)
    grid = (reporter.project.root / "metrics/ptq_grid.csv").read_text(encoding="utf-8")
    assert CC in grid and UC in grid


def test_pulled_run_cache_without_the_outputs_restores_nothing(origin: DvcProject, worker_cc: Run, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``dvc pull --run-cache`` fetches the run-cache entries, but on a clone without ``dvc.lock`` no output:
    ``dvc repro`` then runs a stage although the run-cache has an entry for it."""
    project = clone(origin, tmp_path_factory.mktemp("no_outputs"))
    project.dvc("pull", "--run-cache", "--allow-missing")
    assert any(path.is_file() for path in (project.root / ".dvc/cache/runs").rglob("*"))
    assert not (project.root / "data/raw/dbpedia").exists()
    assert ran_stages(project.dvc("repro", "fingerprints")) == ["fingerprints"]  # the code dependency of every stage
    output = project.dvc("repro", "--single-item", DOWNLOAD)
    assert ran_stages(output) == [DOWNLOAD] and restored_stages(output) == []


def test_repro_pull_restores_until_code_or_params_change(origin: DvcProject, worker_cc: Run, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``dvc repro --pull`` fetches the run-cache and the outputs it names; a run-cache entry is found only for
    the same command, dependencies (code fingerprints included) and params, so an edit means a rerun."""
    project = clone(origin, tmp_path_factory.mktemp("changes"))
    project.dvc("repro", "fingerprints")
    output = project.dvc("repro", "--pull", "--single-item", DOWNLOAD)
    assert ran_stages(output) == [] and restored_stages(output) == [DOWNLOAD]
    assert hash_files(project.root, "data/raw/dbpedia") == hash_files(worker_cc.project.root, "data/raw/dbpedia")

    script = project.root / "stages/download.py"
    script.write_text(script.read_text(encoding="utf-8") + "\n# an edit that changes the stage's code fingerprint\n", encoding="utf-8")
    assert ran_stages(project.dvc("repro", "fingerprints")) == ["fingerprints"]
    output = project.dvc("repro", "--pull", "--single-item", DOWNLOAD)
    assert ran_stages(output) == [DOWNLOAD] and restored_stages(output) == []

    params = project.params()
    params["download"]["dbpedia"]["bundled_test_fraction"] = 0.25
    project.set_params(params)
    output = project.dvc("repro", "--pull", "--single-item", DOWNLOAD)
    assert ran_stages(output) == [DOWNLOAD] and restored_stages(output) == []


def test_clone_with_committed_lock_runs_nothing(reporter: Run, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = clone(reporter.project, tmp_path_factory.mktemp("lock_clone"))
    assert project.lock()["stages"].keys() >= REPORT_CHAIN

    # dvc.yaml has stages the lock lacks (noise, analysis): a plain pull checks them out too, and fails.
    failed = dvc_exit(project, "pull", "--run-cache")
    assert failed.returncode == 1 and "Checkout failed for following targets" in failed.stdout, failed.stdout
    assert "data/noisy/dbpedia/uniform_substitution" in failed.stdout  # noisy_test's output: not in the lock

    project.dvc("pull", "--run-cache", "--allow-missing")
    output = project.dvc("repro", REPORT)
    assert ran_stages(output) == [] and restored_stages(output) == []
    assert sorted(unchanged_stages(output)) == sorted(REPORT_CHAIN)
    assert json.loads(project.dvc("status", "--json", REPORT, "--with-deps")) == {}
    assert hash_files(project.root, *RESULTS) == hash_files(reporter.project.root, *RESULTS)
