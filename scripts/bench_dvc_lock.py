"""DVC's own cost of recording one stage: the round trip of the lock file the stage belongs to.

After every stage it runs, ``dvc repro`` rewrites that stage's entry in its dvc.lock through
``dvc.utils.serialize.modify_yaml``: a ruamel round-trip parse of the whole file, then a dump of the whole
file. The time grows with the file, so one lock for every stage makes each stage slower the more stages
the study has, and the whole run quadratic in the number of stages. This script times that round trip
with DVC's own functions on each lock file of the project (or the files given), ``--repeats`` times,
and prints the median per file and the total a full run would spend in it (entries x median).

With ``--entries N`` it also times a synthetic lock of N copies of the project's first calibrate entry,
the size one lock file would have if every stage of a study of N stages shared it.

    ./run python scripts/bench_dvc_lock.py
    ./run python scripts/bench_dvc_lock.py --entries 300 900 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from dvc.utils.serialize import dump_yaml, parse_yaml_for_update

REPO = Path(__file__).resolve().parents[1]


def round_trip_seconds(path: Path, repeats: int) -> float:
    """Median seconds of DVC's read-modify-write of ``path`` (its ``modify_yaml`` without the change)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        data = parse_yaml_for_update(path.read_text(encoding="utf-8"), str(path))
        with tempfile.TemporaryDirectory() as scratch:
            dump_yaml(Path(scratch) / "dvc.lock", data)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def synthetic_lock(entries: int, template: dict, folder: Path) -> Path:
    stages = {f"calibrate@copy-{i}": copy.deepcopy(template) for i in range(entries)}  # copies: no YAML aliases
    path = folder / f"dvc-{entries}.lock"
    path.write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("locks", nargs="*", type=Path, help="lock files (default: every dvc.lock of the project)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entries", type=int, nargs="*", default=[], help="also time synthetic locks of this many calibrate entries")
    args = parser.parse_args()
    locks = args.locks or sorted([REPO / "dvc.lock", *REPO.glob("variants/*/dvc.lock")])
    print(f"{'lock file':48} {'entries':>7} {'KB':>7} {'s per stage':>11} {'s per run':>9}")
    total = 0.0
    template = None
    for path in locks:
        if not path.is_file():
            continue
        stages = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader).get("stages", {})
        template = template or next((v for k, v in stages.items() if k.startswith("calibrate@")), None)
        seconds = round_trip_seconds(path, args.repeats)
        total += seconds * len(stages)
        name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        print(f"{name:48} {len(stages):7d} {path.stat().st_size / 1024:7.0f} {seconds:11.2f} {seconds * len(stages) / 60:8.1f}m")
    print(f"{'every stage of these files, once':48} {'':7} {'':7} {'':11} {total / 60:8.1f}m")
    if args.entries:
        if template is None:
            raise SystemExit("no calibrate entry in the lock files to copy for --entries")
        with tempfile.TemporaryDirectory() as folder:
            for n in args.entries:
                path = synthetic_lock(n, template, Path(folder))
                seconds = round_trip_seconds(path, args.repeats)
                print(f"{f'synthetic: {n} calibrate entries':48} {n:7d} {path.stat().st_size / 1024:7.0f} {seconds:11.2f} {seconds * n / 60:8.1f}m")


if __name__ == "__main__":
    main()
