"""`dvc repro` of every dvc.yaml with several DVC processes at once: what a bare `./run repro` runs.

    ./run repro                                          # LSTM_PTQ_JOBS workers (default: the usable cores)
    ./run python scripts/parallel_repro.py --jobs 2 [--dry-run]

DVC runs one stage at a time. On 2 cores that leaves one idle while DVC hashes outputs and rewrites a lock
file, and while a stage imports, loads a model or runs Python between tensor operations: two calibrate
files of 14 cells took 465 s one after the other and 321 s side by side with one torch thread each (README,
Performance). This script plans the stages to run from DVC's own graph and status, groups them by dvc.yaml
file and stage family (``calibrate@...`` of one file: one group), and starts each group as
``dvc --wait-for-lock repro --single-item <its stages>`` once every group it depends on has finished, up to
``--jobs`` at once. Each worker's stages run with ``LSTM_PTQ_THREADS`` = cores / jobs (unless set), which
gives the same bytes as more threads (tests/test_runtime.py). Training is the exception: a stage that
runs ``stages/train.py`` (its thread count is ``train.num_threads``, a tracked param) runs alone, so its fixed thread count never shares the cores. A plain
``dvc repro --all-pipelines`` ends the run and finds nothing left to do unless a stage was missed. DVC
releases its repository lock while a stage's command runs and takes it again to record the result, so two
workers never write a lock file at once; a group's stages only read outputs of finished groups.

``--jobs 1`` runs ``dvc repro --all-pipelines`` as before. Output lines are prefixed with the group.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
JOBS_ENV = "LSTM_PTQ_JOBS"
THREADS_ENV = "LSTM_PTQ_THREADS"
# Training takes its thread count from train.num_threads, a tracked param, not from LSTM_PTQ_THREADS: it runs alone.
EXCLUSIVE_SCRIPTS = ("stages/train.py",)
# DVC with the project's speed-ups of its own bookkeeping (src/lstm_ptq/dvc_cli.py; LSTM_PTQ_DVC_SPEEDUPS=0: plain DVC).
DVC = [sys.executable, "-m", "lstm_ptq.dvc_cli"]


@dataclass
class Group:
    """The stages of one family of one dvc.yaml that need to run, in dependency order."""

    name: str
    addresses: list[str]
    exclusive: bool
    upstream: set[str] = field(default_factory=set)
    downstream_stages: int = 0
    cost_key: str = ""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_jobs() -> int:
    raw = os.environ.get(JOBS_ENV)
    if raw is None:
        return usable_cores()
    try:
        jobs = int(raw)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise SystemExit(f"error: {JOBS_ENV}={raw!r}: expected a whole number of workers, 1 or more")
    return jobs


def group_key(stage) -> str:
    """``<dvc.yaml>:<family>``: a matrix or foreach stage's cells share their name before ``@``."""
    family = stage.name.split("@")[0]
    return family if stage.relpath == "dvc.yaml" else f"{stage.relpath}:{family}"


def runs_alone(stage) -> bool:
    words = (stage.cmd or "").split() if isinstance(stage.cmd, str) else []
    return len(words) > 1 and words[1] in EXCLUSIVE_SCRIPTS


def cost_key(stage) -> str:
    """What a group's cost per stage is learned under: its first stage's script and first two arguments
    (``stages/calibrate.py ag_news generative``), the same for that family in every tree of params.yaml."""
    words = [w for w in ((stage.cmd or "").split() if isinstance(stage.cmd, str) else []) if not w.startswith("-")]
    return " ".join(words[1:4])


def plan(root: Path) -> list[Group]:
    """The groups holding every stage that DVC's status finds changed and every stage downstream of one,
    each group's stages in the order a serial `dvc repro --all-pipelines` runs them, with the groups each
    waits for: those it reads from, and the earlier writers of a folder it writes cached outputs to (DVC
    appends each cached output to its folder's .gitignore as the stage runs, and a stage that reads the
    whole folder hashes that file, so its lines keep the serial order). DVC's graph points from a stage
    to the stages it depends on."""
    import networkx as nx
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with Repo(str(root)) as repo:
        graph = get_active_graph(repo.index.graph)
        by_address = {stage.addressing: stage for stage in graph}
        changed = changed_stages(repo, graph)
        to_run = set()
        for address in changed:
            to_run.add(by_address[address])
            to_run.update(nx.ancestors(graph, by_address[address]))  # the stages that depend on it
        order = [stage for stage in plan_repro(graph, []) if stage in to_run]  # DVC's serial order
        groups: dict[str, Group] = {}
        last_writer: dict[str, str] = {}  # folder -> the group that last wrote a cached output to it
        for stage in order:
            key = group_key(stage)
            group = groups.setdefault(key, Group(key, [], False, cost_key=cost_key(stage)))
            group.addresses.append(stage.addressing)
            group.exclusive |= runs_alone(stage)
            group.upstream.update(group_key(up) for up in graph.successors(stage) if up in to_run and group_key(up) != key)
            for out in stage.outs:
                if out.use_cache:
                    folder = os.path.dirname(out.fs_path)
                    if last_writer.get(folder, key) != key:
                        group.upstream.add(last_writer[folder])
                    last_writer[folder] = key
            group.downstream_stages = max(group.downstream_stages, len(nx.ancestors(graph, stage)))
    cycle = _find_cycle(groups)
    if cycle:
        raise SystemExit(f"error: the stage families {' -> '.join(cycle)} wait for each other; run `./run dvc repro --all-pipelines`")
    return list(groups.values())


def changed_stages(repo, stages) -> set[str]:
    """The stages `dvc status` lists. A stage with an output missing from the workspace is listed whatever its
    dependencies hold, so DVC is asked about the others only: on a fresh clone that is none of them, where
    `repo.status()` hashed the dependencies of all ~800 stages first (22 s of a cold run's start)."""
    from dvc.repo import lock_repo

    changed = set()
    with lock_repo(repo):
        for stage in stages:
            if any(not out.exists for out in stage.outs):
                changed.add(stage.addressing)
            else:
                changed.update(stage.status())
    return changed


def _find_cycle(groups: dict[str, Group]) -> list[str]:
    import networkx as nx

    graph = nx.DiGraph([(name, up) for name, group in groups.items() for up in group.upstream])
    try:
        return [edge[0] for edge in nx.find_cycle(graph)]
    except nx.NetworkXNoCycle:
        return []


class Worker:
    """One ``dvc repro`` process for one group, its output lines printed with the group's name."""

    def __init__(self, group: Group, env: dict[str, str], root: Path, print_lock: threading.Lock) -> None:
        self.group = group
        command = [*DVC, "--wait-for-lock", "repro", "--single-item", *group.addresses]
        self.process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.started = time.perf_counter()
        self._reader = threading.Thread(target=self._relay, args=(print_lock,), daemon=True)
        self._reader.start()

    def _relay(self, print_lock: threading.Lock) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with print_lock:
                sys.stdout.write(f"[{self.group.name}] {line}")
                sys.stdout.flush()

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._reader.join()
        return code


def priority(group: Group, per_stage: dict[str, float]) -> tuple:
    """The sort key of a ready group: exclusive first, then most stages downstream, then the longest by the
    seconds per stage learned for its cost key (unknown: 0), then the most stages, then the name."""
    estimate = per_stage.get(group.cost_key, 0.0) * len(group.addresses)
    return (not group.exclusive, -group.downstream_stages, -estimate, -len(group.addresses), group.name)


def run_groups(groups: list[Group], jobs: int, root: Path, env: dict[str, str]) -> int:
    """Start each group when its upstream groups are done, at most ``jobs`` at once (an exclusive group alone);
    the first failure stops new starts, lets the running groups finish and returns its exit status.

    Of the ready groups, an exclusive one goes first, then the one with the most stages downstream, then the
    longest by what this run has learned: the seconds per stage of a finished group with the same cost key
    (the same family in another tree), so that a 300-s family does not start last and leave the other workers
    idle at the end (32 s of a 90-min cold run, in a replay of that run's logged group times)."""
    pending = {group.name: group for group in groups}
    per_stage: dict[str, float] = {}  # cost key -> seconds per stage of the first finished group with it
    running: list[Worker] = []
    print_lock = threading.Lock()
    failure = 0
    interrupted: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        interrupted.append(signum)
        for worker in running:
            if worker.process.poll() is None:
                worker.process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            ready = [g for g in pending.values() if not (g.upstream & (set(pending) | {w.group.name for w in running}))]
            ready.sort(key=lambda g: priority(g, per_stage))
            while not failure and not interrupted and ready and len(running) < jobs:
                group = ready[0]
                if group.exclusive and running:
                    break  # let the cores drain first
                if running and running[0].group.exclusive:
                    break
                ready.pop(0)
                del pending[group.name]
                with print_lock:
                    print(f"parallel_repro: start {group.name} ({len(group.addresses)} stages{', alone' if group.exclusive else ''})", flush=True)
                running.append(Worker(group, env, root, print_lock))
                if group.exclusive:
                    break
            if (failure or interrupted) and not running:
                break
            if not running and pending:
                raise SystemExit(f"error: no group can start; waiting: {sorted(pending)[:5]}")
            time.sleep(0.2)
            for worker in list(running):
                code = worker.poll()
                if code is None:
                    continue
                running.remove(worker)
                seconds = time.perf_counter() - worker.started
                with print_lock:
                    print(f"parallel_repro: {'done' if code == 0 else f'FAILED (exit {code})'} {worker.group.name} in {seconds:.1f} s", flush=True)
                if code and not failure:
                    failure = code
                if code == 0:
                    per_stage.setdefault(worker.group.cost_key, seconds / len(worker.group.addresses))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending and (failure or interrupted):
        print(f"parallel_repro: stopped; {len(pending)} groups not started", flush=True)
    if interrupted:
        return 128 + interrupted[0]
    return failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=None, help=f"workers at once (default: ${JOBS_ENV}, else the usable cores)")
    parser.add_argument("--root", type=Path, default=REPO, help="the project (default: this script's repository)")
    parser.add_argument("--dry-run", action="store_true", help="print the groups and what each waits for, run nothing")
    args = parser.parse_args(argv)
    jobs = default_jobs() if args.jobs is None else args.jobs
    if jobs < 1:
        parser.error(f"--jobs {jobs}: expected a whole number of workers, 1 or more")
    dvc = [*DVC, "repro", "--all-pipelines"]
    if jobs == 1 and not args.dry_run:
        return subprocess.call(dvc, cwd=args.root)

    from dvc.exceptions import DvcException

    from lstm_ptq.dvc_cli import apply_from_environment

    apply_from_environment()  # the plan reads DVC's status: the same speed-ups as the workers

    started = time.perf_counter()
    try:
        groups = plan(args.root)
    except DvcException as exc:
        print(f"error: dvc: {exc}", file=sys.stderr)
        return 1
    stages = sum(len(g.addresses) for g in groups)
    env = dict(os.environ)
    env.setdefault(THREADS_ENV, str(max(1, usable_cores() // jobs)))
    print(
        f"parallel_repro: {stages} stages to run in {len(groups)} groups, {jobs} workers x {env[THREADS_ENV]} torch threads "
        f"({time.perf_counter() - started:.1f} s to plan)",
        flush=True,
    )
    if args.dry_run:
        for group in groups:
            waits = f" after {', '.join(sorted(group.upstream))}" if group.upstream else ""
            print(f"  {group.name}: {len(group.addresses)} stages{' (alone)' if group.exclusive else ''}{waits}")
        return 0
    if not groups:
        print("parallel_repro: nothing to run (dvc status: every stage up to date)", flush=True)
        return 0
    code = run_groups(groups, jobs, args.root, env)
    if code:
        return code
    # DVC itself, once more over every dvc.yaml: nothing left to run unless the plan missed a stage.
    return subprocess.call(dvc, cwd=args.root)


if __name__ == "__main__":
    sys.exit(main())
