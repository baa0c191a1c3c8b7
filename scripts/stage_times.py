"""Wall time per stage type of the last `dvc repro`, from the modification times of each stage's outputs.

    ./run python scripts/stage_times.py [--root DIR] [--since "2026-12-01 21:45:00"]

`dvc repro` runs stages one after another and writes each stage's outputs when it ends, so the gap between
one stage's newest output and the previous stage's is that stage's wall time, DVC's own work for it included.
Stages whose outputs are older than ``--since`` (the repro's start, local time) did not run in that repro and
are left out; the first stage that ran is timed from ``--since``.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import defaultdict
from pathlib import Path

import yaml
from generate_dvc_yaml import project_files


def newest_mtime(path: Path) -> float | None:
    if path.is_file():
        return path.stat().st_mtime
    if path.is_dir():
        times = [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
        return max(times) if times else None
    return None


def stage_ends(root: Path) -> dict[str, float]:
    """Each locked stage's end: the newest modification time among its outputs."""
    ends = {}
    # every dvc.lock: the root one, the families' and the trees'; their stages run from the repository root,
    # so every output path is relative to ``root``
    for lock_file in project_files(root, "dvc.lock"):
        for name, entry in (yaml.safe_load(lock_file.read_text(encoding="utf-8")).get("stages") or {}).items():
            times = [t for out in entry.get("outs", []) if (t := newest_mtime(root / out["path"])) is not None]
            if times:
                ends[name] = max(times)
    return ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."))
    parser.add_argument("--since", required=True, help="when the repro started, local time, e.g. '2026-12-01 21:45:00'")
    args = parser.parse_args()
    start = dt.datetime.fromisoformat(args.since).timestamp()
    ran = sorted((end, name) for name, end in stage_ends(args.root).items() if end >= start)
    totals: dict[str, list[float]] = defaultdict(list)
    previous = start
    for end, name in ran:
        totals[name.split("@")[0]].append(end - previous)
        previous = end
    print(f"{len(ran)} stages, {(previous - start) / 60:.1f} min from {args.since} to the last output\n")
    print(f"{'stage type':<32}{'stages':>7}{'total min':>11}{'median s':>10}{'max s':>8}")
    for kind, seconds in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        ordered = sorted(seconds)
        median = ordered[len(ordered) // 2]
        print(f"{kind:<32}{len(seconds):>7}{sum(seconds) / 60:>11.1f}{median:>10.1f}{max(seconds):>8.1f}")


if __name__ == "__main__":
    main()
