"""DVC's own cost per stage, and of a no-op `dvc status`, on a repository whose pipeline has run.

    ./run python scripts/bench_dvc_stage.py [--stages ADDRESS ...] [--status-repeats 2]

Each named stage (default: one cell of every dvc.yaml with a lock of 40 entries or more, the files whose
lock round trip is largest) is rerun with `dvc repro --force --single-item` under DVC's own profiler
(``--cprofile-dump``). From the profile: the stage's command (the time DVC waits for its process), the
stage collection that a `dvc repro` does once however many stages it runs, and the rest, which DVC spends
around this one stage (hashing its dependencies and outputs, the cache, the run-cache entry, and the
rewrite of its lock file, shown on its own). A forced stage writes the same bytes again, so the
repository is left as it was. Then `dvc status` on the whole project, nothing changed, ``--status-repeats``
times, alternately as ``./run dvc`` runs it (``python -m lstm_ptq.dvc_cli``: DVC with the project's two
speed-ups of its bookkeeping) and as DVC is installed (``python -m dvc``); the stages are profiled through
the former. With ``--status-split``, the parts of one such status, each timed with DVC's own objects in this
process, first as installed and then with the speed-ups: building the index of every dvc.yaml, the params
dependencies (DVC reads and parses params.yaml once per stage and looks each declared key up with ``dpath``),
the other dependencies and the outputs (a directory's tree is hashed through fsspec's in-memory store).
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from generate_dvc_yaml import project_files

from lstm_ptq import dvc_cli

REPO = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"./run dvc (with the speed-ups)": "lstm_ptq.dvc_cli", "DVC as installed": "dvc"}


def default_stages(root: Path, min_entries: int = 40) -> list[str]:
    """The first entry of every dvc.lock with at least ``min_entries`` entries, addressed with its dvc.yaml."""
    chosen = []
    for lock in project_files(root, "dvc.lock"):
        stages = yaml.safe_load(lock.read_text(encoding="utf-8")).get("stages") or {}
        if len(stages) >= min_entries:
            dvc_yaml = lock.with_name("dvc.yaml").relative_to(root).as_posix()
            name = next(iter(stages))
            chosen.append(name if dvc_yaml == "dvc.yaml" else f"{dvc_yaml}:{name}")
    return chosen


def cumulative(stats: pstats.Stats, file_suffix: str, function: str) -> float:
    """The cumulative seconds of one function of the profile (0 when it was not called)."""
    return sum(ct for (file, _, name), (_, _, _, ct, _) in stats.stats.items() if file.endswith(file_suffix) and name == function)  # type: ignore[attr-defined]


def profile_stage(address: str, root: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        dump = Path(scratch) / "repro.prof"
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lstm_ptq.dvc_cli", "repro", "--force", "--single-item", address, "--cprofile-dump", str(dump)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(f"dvc repro {address} failed ({done.returncode}):\n{done.stdout}")
        stats = pstats.Stats(str(dump))
    profiled = cumulative(stats, "dvc/repo/reproduce.py", "reproduce")
    command = cumulative(stats, "dvc/stage/run.py", "cmd_run")
    collect = cumulative(stats, "dvc/repo/reproduce.py", "collect_stages")
    lock = cumulative(stats, "dvc/dvcfile.py", "_dump_lockfile")
    return {"wall": wall, "command": command, "collect": collect, "per_stage": profiled - command - collect, "lock": lock}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO, help="the repository (default: this one)")
    parser.add_argument("--stages", nargs="*", help="stage addresses (default: one per dvc.lock of 40 entries or more; none after the flag: the status only)")
    parser.add_argument("--status-repeats", type=int, default=2)
    parser.add_argument("--status-split", action="store_true", help="also time the parts of a no-op status")
    args = parser.parse_args()
    root = args.root.resolve()
    stages = args.stages if args.stages is not None else default_stages(root)
    if stages:
        print(f"{'stage':<100}{'command':>9}{'DVC':>7}{'lock':>7}{'collect':>9}")
    own = []
    for address in stages:
        t = profile_stage(address, root)
        own.append(t["per_stage"])
        print(f"{address:<100}{t['command']:>8.1f}s{t['per_stage']:>6.1f}s{t['lock']:>6.1f}s{t['collect']:>8.1f}s")
    if own:
        print(f"DVC's own time per stage: largest {max(own):.1f} s, median {sorted(own)[len(own) // 2]:.1f} s (collect: once per dvc repro, not per stage)")
    env = {k: v for k, v in os.environ.items() if k != dvc_cli.SPEEDUPS_ENV}
    for _ in range(args.status_repeats):
        for name, entry in ENTRY_POINTS.items():
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", entry, "status"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            seconds = time.perf_counter() - started
            print(f"no-op dvc status, {name:<31}{seconds:6.1f} s ({done.stdout.strip().splitlines()[-1] if done.stdout.strip() else 'no output'})")
    if args.status_split:
        status_split(root, "DVC as installed")
        found = dvc_cli.apply()
        if any(found.values()):
            raise SystemExit(f"error: the speed-ups do not apply to the installed versions: {found}")
        status_split(root, "with the speed-ups")


def status_split(root: Path, label: str) -> None:
    """What a no-op `dvc status` spends its time on, part by part, as `Stage.status` checks a stage."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        started = time.perf_counter()
        stages = list(repo.index.stages)
        parts = {"index (every dvc.yaml and dvc.lock)": time.perf_counter() - started}
        params = [dep for stage in stages for dep in stage.deps if isinstance(dep, ParamsDependency)]
        others = [dep for stage in stages for dep in stage.deps if not isinstance(dep, ParamsDependency)]
        outs = [out for stage in stages for out in stage.outs]
        for name, entries in (
            (f"params ({len(params)} reads of the params file, {sum(len(dep.params) for dep in params)} keys)", params),
            (f"other dependencies ({len(others)})", others),
            (f"outputs ({len(outs)})", outs),
        ):
            started = time.perf_counter()
            for entry in entries:
                entry.status()
            parts[name] = time.perf_counter() - started
    print(f"a no-op status of {len(stages)} stages, part by part, {label}:")
    for name, seconds in parts.items():
        print(f"  {name:<60}{seconds:6.1f} s")


if __name__ == "__main__":
    main()
