"""Benchmark: wall time of every PTQ cell (calibrate, GPFQ, evaluate) as recorded by the last `dvc repro`,
and the total for the grid, per dataset and model.

    ./run python scripts/bench_ptq_grid.py
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    cells = sorted(Path("metrics/calibrate").glob("*/*/w*/*.json"))
    if not cells:
        raise SystemExit("no metrics/calibrate/**.json yet: run `./run repro calibrate` first")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    print(f"{'cell':58s} {'calibrate':>9s} {'gpfq':>7s} {'evaluate':>8s} {'accuracy':>8s}")
    for path in cells:
        m = json.loads(path.read_text())
        name = f"{m['dataset']}-{m['model_type']}-w{m['bit_width']}-{m['calibration_scheme']}"
        print(f"{name:58s} {m['calibrate_seconds']:9.1f} {m['gpfq_seconds']:7.1f} {m['evaluate_seconds']:8.1f} {m['accuracy']:8.4f}")
        t = totals[(m["dataset"], m["model_type"])]
        t[0] += m["calibrate_seconds"]
        t[1] += m["gpfq_seconds"]
        t[2] += m["evaluate_seconds"]
        t[3] += 1
    grand = 0.0
    for (dataset, model_type), (cal, gpfq, ev, n) in sorted(totals.items()):
        grand += cal + gpfq + ev
        print(f"{dataset} {model_type}: {int(n)} cells, calibrate {cal:.0f} s + GPFQ {gpfq:.0f} s + evaluate {ev:.0f} s = {(cal + gpfq + ev) / 60:.1f} min")
    print(f"grid: {len(cells)} cells, {grand / 60:.1f} min of calibrate + GPFQ + evaluate (stage start-up and quantize not included)")


if __name__ == "__main__":
    main()
