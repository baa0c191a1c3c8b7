"""Wall time per stage type of the last `dvc repro`, from the modification times of each stage's outputs.

    ./run python scripts/stage_times.py [--root DIR] [--since "2026-12-01 21:45:00"] [--top N]

`dvc repro` runs stages one after another and writes each stage's outputs when it ends, so the gap between
one stage's newest output and the previous stage's is that stage's wall time, DVC's own work for it included.
Stages whose outputs are older than ``--since`` (the repro's start, local time) did not run in that repro and
are left out; the first stage that ran is timed from ``--since``. When stages overlap (a bare `./run repro`
runs several DVC workers, scripts/parallel_repro.py), a stage's gap is its share of the wall time, not its
duration: the totals still add up to the wall time, and the run's log gives each group's own time
(``parallel_repro: done <group> in <s> s``).

Three tables: per stage type (the stage's name before ``@``, e.g. ``seed_2026_calibrate``), per kind (the
stage script it runs, e.g. ``calibrate`` over every tree) and per tree (``main``, each tree of params.yaml
and the noise-trained variant).
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import yaml
from generate_dvc_yaml import FAMILY_ROOT, TREES_ROOT, project_files

MAIN_TREE = "main"


class StageEnd(NamedTuple):
    end: float  # newest modification time among the stage's outputs
    name: str  # stage name as in its dvc.lock, e.g. seed_2026_calibrate@ag_news-generative-4-class_conditional
    kind: str  # the stage script's stem, e.g. calibrate
    tree: str  # main, a tree of params.yaml or the noise-trained variant


def newest_mtime(path: Path) -> float | None:
    if path.is_file():
        return path.stat().st_mtime
    if path.is_dir():
        times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
        return max(times) if times else None
    return None


def stage_kind(command: str, where: str) -> str:
    """The stem of the stage script a lock entry's command runs (``python stages/<kind>.py ...``)."""
    found = re.search(r"stages/(\w+)\.py", command)
    if found is None:
        raise ValueError(f"{where}: command {command!r} runs no stages/<name>.py script")
    return found.group(1)


def stage_tree(lock_file: Path, root: Path, base_name: str, kind: str) -> str:
    """The tree a stage belongs to: a tree's own lock (variants/<tree>/) names it; a family's lock
    (pipelines/) holds the main tree's ``<kind>`` stages and a tree's ``<tree>_<kind>`` ones."""
    home = lock_file.relative_to(root).parent
    if home.parent == Path(TREES_ROOT):
        return home.name
    if home.parent == Path(FAMILY_ROOT) and base_name.endswith(f"_{kind}"):
        return base_name[: -len(kind) - 1]
    return MAIN_TREE


def stage_ends(root: Path) -> list[StageEnd]:
    """Every locked stage whose outputs exist, with the newest modification time among them."""
    ends = []
    # every dvc.lock: the root one, the families' and the trees'; their stages run from the repository root,
    # so every output path is relative to ``root``
    for lock_file in project_files(root, "dvc.lock"):
        for name, entry in (yaml.safe_load(lock_file.read_text(encoding="utf-8")).get("stages") or {}).items():
            times = [t for out in entry.get("outs", []) if (t := newest_mtime(root / out["path"])) is not None]
            if times:
                kind = stage_kind(entry.get("cmd", ""), f"{lock_file}: {name}")
                ends.append(StageEnd(max(times), name, kind, stage_tree(lock_file, root, name.split("@")[0], kind)))
    return ends


def durations(ends: list[StageEnd], start: float) -> list[tuple[StageEnd, float]]:
    """Each stage that ended after ``start`` with its wall time: the gap to the previous stage's end."""
    timed = []
    previous = start
    for stage in sorted(s for s in ends if s.end >= start):
        timed.append((stage, stage.end - previous))
        previous = stage.end
    return timed


def grouped(timed: list[tuple[StageEnd, float]], key: Callable[[StageEnd], str]) -> dict[str, list[float]]:
    """The wall times of ``timed`` by ``key`` of their stage."""
    groups: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in timed:
        groups[key(stage)].append(seconds)
    return groups


def table(title: str, groups: dict[str, list[float]], top: int | None = None) -> list[str]:
    """Rows of stage count, total minutes, median and largest seconds per group, largest total first."""
    lines = [f"{title:<32}{'stages':>7}{'total min':>11}{'median s':>10}{'max s':>8}"]
    ordered = sorted(groups.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    for group, seconds in ordered[:top]:
        values = sorted(seconds)
        lines.append(f"{group:<32}{len(values):>7}{sum(values) / 60:>11.1f}{values[len(values) // 2]:>10.1f}{values[-1]:>8.1f}")
    if top is not None and len(ordered) > top:
        rest = [s for _, seconds in ordered[top:] for s in seconds]
        lines.append(f"{f'({len(ordered) - top} more)':<32}{len(rest):>7}{sum(rest) / 60:>11.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--since", required=True, help="when the repro started, local time, e.g. '2026-12-01 21:45:00'")
    parser.add_argument("--top", type=int, default=None, help="print only the N largest stage types (the rest summed)")
    args = parser.parse_args()
    if args.top is not None and args.top < 1:
        parser.error(f"--top {args.top}: expected a positive number of stage types")
    try:
        start = dt.datetime.fromisoformat(args.since).timestamp()
    except ValueError:
        parser.error(f"--since {args.since!r}: expected a local time such as '2026-12-01 21:45:00'")
    timed = durations(stage_ends(args.root), start)
    if not timed:
        parser.error(f"--since {args.since!r}: no stage under {args.root} wrote an output after that time")
    wall = timed[-1][0].end - start
    print(f"{len(timed)} stages, {wall / 60:.1f} min from {args.since} to the last output\n")
    print("\n".join(table("stage type", grouped(timed, lambda stage: stage.name.split("@")[0]), args.top)))
    print()
    print("\n".join(table("kind (stage script)", grouped(timed, lambda stage: stage.kind))))
    print()
    print("\n".join(table("tree", grouped(timed, lambda stage: stage.tree))))


if __name__ == "__main__":
    main()
