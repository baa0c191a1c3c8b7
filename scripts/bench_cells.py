"""What the per-cell benchmarks (bench_calibration.py, bench_gpfq.py) share: their command line."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def cell_benchmark_args(description: str, root_help: str, cells_help: str) -> argparse.Namespace:
    """``--root`` (a Path), ``--cells``, ``--repeats`` and ``--threads``, parsed; PyTorch set to that many threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help=root_help)
    parser.add_argument("--cells", nargs="*", help=cells_help)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell and variant; the fastest is printed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} threads; fastest of {args.repeats}")
    return args


def cell_fields(cell: str, names: tuple[str, ...]) -> list[str]:
    """The ``:``-separated fields of one ``--cells`` entry, or exit with what was expected (a bit width
    field must be an integer)."""
    fields = cell.split(":")
    if len(fields) != len(names) or not all(fields):
        raise SystemExit(f"--cells {cell!r}: expected {':'.join(names)}, e.g. {':'.join(EXAMPLE[name] for name in names)}")
    for name, text in zip(names, fields, strict=True):
        if name == "bit_width" and not text.isdigit():
            raise SystemExit(f"--cells {cell!r}: the bit width {text!r} is not an integer")
    return fields


EXAMPLE = {"dataset": "ag_news", "model_type": "generative", "bit_width": "4", "scheme": "class_conditional"}


class SpeedTable:
    """The benchmarks' table: per cell, the reference's and our wall time, the speed-up, whether the results
    are identical and whether ours equal the committed file ("-" when the pipeline has not run); then the total."""

    def __init__(self, cell_width: int, reference: str, ours: str) -> None:
        self.cell_width = cell_width
        self.totals = [0.0, 0.0]
        print(f"{'cell':<{cell_width}}{'documents':>10}{reference:>10}{ours:>8}{'speed-up':>10}  identical  equal to committed file")

    def row(self, cell: str, documents: int, reference_s: float, ours_s: float, identical: bool, committed: str) -> None:
        self.totals[0] += reference_s
        self.totals[1] += ours_s
        print(f"{cell:<{self.cell_width}}{documents:>10}{reference_s:>9.2f}s{ours_s:>7.2f}s{reference_s / ours_s:>9.1f}x  {identical!s:<9}  {committed}")

    def total(self) -> None:
        reference_s, ours_s = self.totals
        print(f"{'all':<{self.cell_width + 10}}{reference_s:>9.2f}s{ours_s:>7.2f}s{reference_s / ours_s:>9.1f}x")
