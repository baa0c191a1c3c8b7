"""Benchmark: wall time of every PTQ step as recorded by the last `dvc repro`: activation ranges
(calibration, once per scheme), and per cell GPFQ and test evaluation; totals per dataset and model.

    ./run python scripts/bench_ptq_grid.py

Stage start-up (Python, torch and Brevitas imports, DVC bookkeeping) is not in these figures; the
end-to-end wall time of `dvc repro` is the number to compare with the 90-minute budget.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    cells = sorted(Path("metrics/calibrate").glob("*/*/w*/*.json"))
    ranges = sorted(Path("models/activation_ranges").glob("*/*/*/summary.json"))
    if not cells:
        raise SystemExit("no metrics/calibrate/**.json yet: run `./run repro ptq_report` first")
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0, 0])
    print(f"{'activation ranges (calibration)':58s} {'seconds':>9s} {'documents':>9s}")
    for path in ranges:
        m = json.loads(path.read_text())
        print(f"{m['dataset']}-{m['model_type']}-{m['calibration_scheme']:40s} {m['calibrate_seconds']:9.1f} {m['calibration_documents']:9d}")
        t = totals[(m["dataset"], m["model_type"])]
        t[0] += m["calibrate_seconds"]
        t[4] += 1
    print(f"\n{'cell':58s} {'gpfq':>7s} {'evaluate':>8s} {'accuracy':>8s}")
    for path in cells:
        m = json.loads(path.read_text())
        name = f"{m['dataset']}-{m['model_type']}-w{m['bit_width']}-{m['calibration_scheme']}"
        print(f"{name:58s} {m['gpfq_seconds']:7.1f} {m['evaluate_seconds']:8.1f} {m['accuracy']:8.4f}")
        t = totals[(m["dataset"], m["model_type"])]
        t[1] += m["gpfq_seconds"]
        t[2] += m["evaluate_seconds"]
        t[3] += 1
    grand = 0.0
    print()
    for (dataset, model_type), (cal, gpfq, ev, n, schemes) in sorted(totals.items()):
        grand += cal + gpfq + ev
        print(
            f"{dataset} {model_type}: {int(schemes)} range calibrations {cal:.0f} s, {int(n)} cells: "
            f"GPFQ {gpfq:.0f} s + evaluate {ev:.0f} s; total {(cal + gpfq + ev) / 60:.1f} min"
        )
    print(f"grid: {len(cells)} cells, {grand / 60:.1f} min of calibration + GPFQ + evaluation (stage start-up and quantize not included)")


if __name__ == "__main__":
    main()
