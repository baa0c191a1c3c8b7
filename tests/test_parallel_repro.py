"""scripts/parallel_repro.py, what a bare `./run repro` runs, on the tiny profile through the real ``dvc`` CLI:
two DVC workers at once run every stage exactly once, start each stage family only after the families it
reads have finished, run training alone, and leave the same dvc.lock files, byte for byte in every hash, as
one `dvc repro --all-pipelines` of an identical project.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
from dvc_project import PROJECT_ROOT, DvcProject, ran_stages, snapshot_project, stage_name
from test_pipeline_full_dvc import tiny_profile

pytestmark = pytest.mark.slow

SCRIPT = PROJECT_ROOT / "scripts" / "parallel_repro.py"
_EVENT = re.compile(r"^parallel_repro: (start|done) (\S+)", re.MULTILINE)
_GROUP_STAGE = re.compile(r"^\[([^\]]+)\] Running stage '([^']+)'", re.MULTILINE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DvcProject, str, DvcProject, str]:
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    projects = []
    for name in ("parallel", "serial"):
        project = DvcProject.create(tmp_path_factory.mktemp(name), snapshot)
        project.set_profile(tiny_profile(project.params()))
        project.run("git", "commit", "-q", "-am", "tiny profile")
        projects.append(project)
    parallel, serial = projects
    parallel_output = parallel.run(sys.executable, str(SCRIPT), "--root", str(parallel.root), "--jobs", "2")
    return parallel, parallel_output, serial, serial.dvc("repro", "--all-pipelines")


def test_every_stage_runs_once_and_the_locks_equal_one_dvc_repro(runs: tuple[DvcProject, str, DvcProject, str]) -> None:
    parallel, parallel_output, serial, serial_output = runs
    ran = [stage_name(address) for _, address in _GROUP_STAGE.findall(parallel_output)]
    assert len(ran) == len(set(ran)) and sorted(ran) == sorted(ran_stages(serial_output))
    assert len(ran) == 45
    assert "2 workers x 1 torch threads" in parallel_output
    # the closing `dvc repro --all-pipelines` found nothing left
    assert ran_stages(parallel_output) == [] and "Data and pipelines are up to date." in parallel_output
    in_parallel, in_series = parallel.lock()["stages"], serial.lock()["stages"]
    assert sorted(in_parallel) == sorted(in_series)
    assert [name for name, entry in in_parallel.items() if entry != in_series[name]] == []
    assert "Data and pipelines are up to date." in parallel.dvc("status")


def _upstream(lock: dict) -> dict[str, set[str]]:
    """Each stage's upstream stages, from the lock: a stage whose output is, contains or lies in one of its deps."""
    outs = {name: [o["path"] for o in entry.get("outs", [])] for name, entry in lock["stages"].items()}
    upstream = {}
    for name, entry in lock["stages"].items():
        deps = [d["path"] for d in entry.get("deps", [])]
        upstream[name] = {
            other
            for other, paths in outs.items()
            if other != name and any(p == d or p.startswith(d + "/") or d.startswith(p + "/") for p in paths for d in deps)
        }
    return upstream


def test_families_start_after_their_inputs_and_training_runs_alone(runs: tuple[DvcProject, str, DvcProject, str]) -> None:
    parallel, output, serial, _ = runs
    group_of = {stage_name(address): group for group, address in _GROUP_STAGE.findall(output)}
    events = [(kind, group) for kind, group in _EVENT.findall(output)]
    position = {(kind, group): i for i, (kind, group) in enumerate(events)}
    assert len(position) == len(events)  # each group started and finished once
    checked = 0
    for stage, upstream in _upstream(serial.lock()).items():
        for before in upstream:
            if group_of[before] != group_of[stage]:
                assert position[("done", group_of[before])] < position[("start", group_of[stage])], (before, stage)
                checked += 1
    assert checked > 40
    trains = {group_of[s] for s in group_of if s.split("@")[0] in ("train", "noise_train")}
    assert len(trains) == 2
    running: set[str] = set()
    overlapped = False
    for kind, group in events:
        if kind == "start":
            assert not (group in trains and running) and not (running & trains), (group, running)
            running.add(group)
            overlapped |= len(running) > 1
        else:
            running.discard(group)
    assert overlapped  # two workers did run at once


def test_jobs_must_be_a_positive_count_and_an_up_to_date_project_runs_nothing(runs: tuple[DvcProject, str, DvcProject, str]) -> None:
    parallel = runs[0]
    env = dict(parallel.env, LSTM_PTQ_JOBS="two")
    done = subprocess.run([sys.executable, str(SCRIPT), "--root", str(parallel.root)], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "LSTM_PTQ_JOBS='two'" in done.stderr
    done = subprocess.run([sys.executable, str(SCRIPT), "--root", str(parallel.root), "--jobs", "0"], env=parallel.env, capture_output=True, text=True)
    assert done.returncode == 2 and "--jobs 0" in done.stderr
    nothing = parallel.run(sys.executable, str(SCRIPT), "--root", str(parallel.root), "--jobs", "2")
    assert "nothing to run" in nothing and "Running stage" not in nothing


def test_a_failing_stage_stops_new_groups_and_leaves_the_locks(runs: tuple[DvcProject, str, DvcProject, str]) -> None:
    parallel = runs[0]
    good = parallel.params()
    bad = copy.deepcopy(good)
    bad["final_layer"]["algorithm"] = "gpfqq"
    before = parallel.lock()
    parallel.set_params(bad)
    try:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--root", str(parallel.root), "--jobs", "2"], cwd=parallel.root, env=parallel.env, capture_output=True, text=True
        )
    finally:
        parallel.set_params(good)
    assert done.returncode == 255, done.stdout  # dvc repro's own exit status for a failed stage, passed on
    failed = re.findall(r"^parallel_repro: FAILED \(exit 255\) (\S+)", done.stdout, re.MULTILINE)
    assert failed and all(":" in name and name.endswith("calibrate") for name in failed), done.stdout
    assert re.search(r"^\[\S+calibrate\] .*final_layer\.algorithm", done.stdout, re.MULTILINE), done.stdout
    assert "groups not started" in done.stdout and "parallel_repro: start ptq_report" not in done.stdout
    assert parallel.lock() == before  # (DVC removes a stage's outputs before running it, as a serial dvc repro does)


def _script_module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import parallel_repro
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return parallel_repro


def _changed(root) -> tuple[set[str], set[str]]:
    """What the plan finds changed, and what DVC's own status lists, for the same project."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph

    with Repo(str(root)) as repo:
        planned = _script_module().changed_stages(repo, get_active_graph(repo.index.graph))
        listed = set(repo.status())
    return planned, listed


def test_the_plan_finds_the_stages_dvc_status_lists_asking_dvc_only_where_every_output_exists(
    runs: tuple[DvcProject, str, DvcProject, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    parallel = runs[0]
    fresh = DvcProject.create(tmp_path_factory.mktemp("fresh"), snapshot_project(tmp_path_factory.mktemp("fresh_snapshot") / "project"))
    fresh.set_profile(tiny_profile(fresh.params()))
    planned, listed = _changed(fresh.root)  # no output exists: every stage, none asked
    assert planned == listed and len(planned) == 45
    lock = parallel.lock()["stages"]
    removed = next(name for name, entry in lock.items() if name.startswith("evaluate@") and entry.get("outs"))
    out = parallel.root / lock[removed]["outs"][0]["path"]
    good = parallel.params()
    changed = copy.deepcopy(good)
    changed["final_layer"]["documents"] += 1
    moved = out.with_name(out.name + ".moved")
    out.rename(moved)
    parallel.set_params(changed)
    try:
        planned, listed = _changed(parallel.root)
    finally:
        parallel.set_params(good)
        moved.rename(out)
    assert planned == listed
    names = {stage_name(address) for address in planned}
    assert removed in names and any(name.startswith("calibrate@") for name in names)
    assert not any(name.startswith(("train@", "tokenize@")) for name in names)
    planned, listed = _changed(parallel.root)
    assert planned == listed and removed not in {stage_name(address) for address in planned}


def test_ready_groups_run_longest_first_by_the_seconds_per_stage_learned_for_their_family() -> None:
    module = _script_module()

    def stage(cmd: str) -> object:
        return type("Stage", (), {"cmd": cmd})()

    main = module.cost_key(stage("python stages/calibrate.py ag_news generative 3 class_conditional"))
    tree = module.cost_key(stage("python stages/calibrate.py ag_news generative 8 unconditional --tree wide_state"))
    other = module.cost_key(stage("python stages/calibrate.py ag_news discriminative 3 class_conditional --tree wide_state"))
    assert main == tree == "stages/calibrate.py ag_news generative" and other != main
    small = module.Group("pipelines/wide_state_calibrate-ag_news-discriminative/dvc.yaml:wide_state_calibrate", ["a"] * 14, False, cost_key=other)
    large = module.Group("pipelines/wide_state_calibrate-ag_news-generative/dvc.yaml:wide_state_calibrate", ["b"] * 14, False, cost_key=tree)
    train = module.Group("train", ["t"], True, cost_key="stages/train.py ag_news generative")
    ready = [small, large, train]
    assert sorted(ready, key=lambda g: module.priority(g, {}))[1:] == [small, large]  # nothing learned: by name
    learned = {main: 21.4, other: 7.9}
    assert sorted(ready, key=lambda g: module.priority(g, learned)) == [train, large, small]
    large.downstream_stages = 0
    small.downstream_stages = 1
    assert sorted(ready, key=lambda g: module.priority(g, learned)) == [train, small, large]  # the critical path first
