"""Print the README's results tables from the pipeline's own outputs (nothing here is typed by hand).

    ./run python scripts/results_summary.py

Reads metrics/table1.csv, metrics/ptq_grid.csv, metrics/noise_grid.csv, metrics/figure16.json and the
summary table of reports/findings.md, as written by `./run repro`; a missing file is reported and its
section skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

from lstm_ptq.paths import ProjectPaths


def exists(path: Path) -> bool:
    if not path.is_file():
        print(f"({path} is missing: run `./run repro` first)\n", file=sys.stderr)
    return path.is_file()


def read_rows(path: Path) -> list[dict[str, str]] | None:
    if not exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def pct(value: str | float | None) -> str:
    return "-" if value in (None, "") else f"{100 * float(value):.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ptq_tables(rows: list[dict[str, str]]) -> None:
    bit_widths = sorted({int(r["bit_width"]) for r in rows}, reverse=True)
    schemes = list(dict.fromkeys(r["calibration_scheme"] for r in rows))  # the grid's order, i.e. grid.calibration_schemes
    cells = {(r["dataset"], r["model_type"], int(r["bit_width"]), r["calibration_scheme"]): r for r in rows}
    floats = {(r["dataset"], r["model_type"]): r["float_accuracy"] for r in rows}
    for dataset, model_type in sorted(floats):
        body = []
        for scheme in schemes:
            body.append([scheme] + [pct(cells.get((dataset, model_type, b, scheme), {}).get("accuracy")) for b in bit_widths])
        print(f"**{dataset}, {model_type}** (float {pct(floats[(dataset, model_type)])}%): test accuracy (%) per calibration scheme and bit width\n")
        print(table(["scheme"] + [f"w{b}" for b in bit_widths], body) + "\n")
    gpfq = [r for r in rows if r["final_layer_error_before_gpfq"] and r["final_layer_error_after_gpfq"]]
    if gpfq:
        lower = sum(float(r["final_layer_error_after_gpfq"]) < float(r["final_layer_error_before_gpfq"]) for r in gpfq)
        print(f"GPFQ lowered the final layer's output error on the calibration data in {lower} of {len(gpfq)} cells.\n")


def noise_tables(rows: list[dict[str, str]]) -> None:
    levels = sorted({float(r["noise_level"]) for r in rows})
    top = levels[-1]
    # key: (dataset, model_type, noise_model, calibration scheme or "-", precision)
    curves: dict[tuple[str, ...], dict[float, str]] = defaultdict(dict)
    documents: dict[tuple[str, ...], str] = {}
    for r in rows:
        key = (r["dataset"], r["model_type"], r["noise_model"], r["calibration_scheme"] or "-", r["precision"])
        curves[key][float(r["noise_level"])] = r["accuracy"]
        documents[key] = r["documents"]
    floats = sorted(k for k in curves if k[4] == "float")
    print("**Figure 9** (float models, whole test split): test accuracy (%) per noise level\n")
    print(
        table(
            ["dataset", "model", "noise model"] + [f"{level:g}" for level in levels],
            [[*k[:3]] + [pct(curves[k].get(level)) for level in levels] for k in floats],
        )
        + "\n"
    )
    quantized = sorted((k for k in curves if k[4] != "float"), key=lambda k: (k[:4], -int(k[4][1:])))
    if quantized:
        print(f"**Figure 10** (calibrated models, evenly spaced test subset): accuracy (%) at noise 0 and {top:g}, and the drop\n")
        body = []
        for k in quantized:
            clean, noisy = curves[k].get(0.0), curves[k].get(top)
            drop = "-" if clean is None or noisy is None else f"{100 * (float(clean) - float(noisy)):.2f}"
            body.append([k[0], k[1], k[3], k[4], documents[k], pct(clean), pct(noisy), drop])
        print(table(["dataset", "model", "scheme", "bits", "test docs", "eps 0", f"eps {top:g}", "drop (points)"], body) + "\n")


def figure16(path: Path) -> None:
    if not exists(path):
        return
    for dataset, by_bits in json.loads(path.read_text(encoding="utf-8")).items():
        order = sorted(by_bits, key=lambda b: (b != "float", -int(b) if b.isdigit() else 0))
        print(f"**Figure 16 ({dataset}, generative, class-conditional calibration)**: test accuracy (%) on noisy input\n")
        print(
            table(["bits", "trained clean", "trained with noise"], [[b, pct(by_bits[b]["clean_trained"]), pct(by_bits[b]["noise_trained"])] for b in order])
            + "\n"
        )


def findings_summary(path: Path) -> None:
    """The verdict table of the findings report, as the ``findings`` stage wrote it."""
    if not exists(path):
        return
    text = path.read_text(encoding="utf-8")
    start = text.index("## Summary")
    end = text.index("\n## ", start + 1)
    print("**Findings** (verdicts from `reports/findings.md`; numbers, intervals and tests there)\n")
    print("\n".join(line for line in text[start:end].splitlines()[1:] if line.strip()) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="the project tree whose metrics/ are read (default: .)")
    args = parser.parse_args()
    paths = ProjectPaths(Path(args.root))
    table1 = read_rows(paths.table1_csv())
    if table1:
        print("**Table 1** (float models)\n")
        print(
            table(
                ["model", "dataset", "test accuracy (%)", "paper (%)", "training rows", "test rows"],
                [[r["model"], r["dataset"], r["accuracy_pct"], r["paper_accuracy_pct"], r["train_rows"], r["test_rows"]] for r in table1],
            )
            + "\n"
        )
    grid = read_rows(paths.ptq_grid())
    if grid:
        ptq_tables(grid)
    noise = read_rows(paths.noise_grid())
    if noise:
        noise_tables(noise)
    figure16(paths.figure16_metrics())
    findings_summary(Path(args.root) / "reports" / "findings.md")


if __name__ == "__main__":
    main()
