"""Compare the pipeline outputs of two project trees: the check that a refactor changed no result.

JSON files are compared by value and CSV files by row, both without the wall-clock fields that older
versions of the pipeline wrote into its outputs (``--ignore``); every other file byte for byte.

    ./run python scripts/compare_trees.py OLD_ROOT NEW_ROOT [--dirs metrics plots models data variants]

Prints one line per differing file and a summary; exits 1 when a file present in both trees differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

TIMING_FIELDS = ("gpfq_seconds", "evaluate_seconds", "calibrate_seconds", "train_seconds", "tokens_per_second")


def _without(value: Any, ignored: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, ignored) for k, v in value.items() if k not in ignored}
    if isinstance(value, list):
        return [_without(v, ignored) for v in value]
    return value


def same(a: Path, b: Path, ignored: set[str]) -> bool:
    if a.suffix == ".json":
        return _without(json.loads(a.read_text()), ignored) == _without(json.loads(b.read_text()), ignored)
    if a.suffix == ".csv":
        left, right = pd.read_csv(a, dtype=str, keep_default_na=False), pd.read_csv(b, dtype=str, keep_default_na=False)
        left = left.drop(columns=[c for c in left.columns if c in ignored])
        right = right.drop(columns=[c for c in right.columns if c in ignored])
        return left.equals(right)
    return a.read_bytes() == b.read_bytes()


def files(root: Path, paths: list[str]) -> set[str]:
    """Every file at or under ``paths`` (files or folders, relative to ``root``), .gitignore files left out."""
    found = set()
    for top in (root / p for p in paths):
        candidates = [top] if top.is_file() else top.rglob("*") if top.is_dir() else []
        found |= {c.relative_to(root).as_posix() for c in candidates if c.is_file() and c.name != ".gitignore"}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--dirs", nargs="+", default=["metrics", "plots", "models", "data", "variants"], help="files or folders to compare")
    parser.add_argument("--ignore", nargs="*", default=list(TIMING_FIELDS), help="JSON keys and CSV columns left out of the comparison")
    args = parser.parse_args()
    old, new = files(args.old, args.dirs), files(args.new, args.dirs)
    ignored = set(args.ignore)
    differing = sorted(f for f in old & new if not same(args.old / f, args.new / f, ignored))
    for name in differing:
        print(f"differs: {name}")
    print(f"{len(old & new) - len(differing)} identical, {len(differing)} differing, {len(old - new)} only in {args.old}, {len(new - old)} only in {args.new}")
    for name in sorted(old - new):
        print(f"only in old: {name}")
    for name in sorted(new - old):
        print(f"only in new: {name}")
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
