"""Print the composition comparison under each setting of the study, from whichever calibrate cells have run.

The findings report's "Accuracy by setting at low bit widths" gives the same numbers once the whole study
has run; this script reads only the per-cell files (``metrics/calibrate`` of the main tree and of every
tree of params.yaml), so it also works part way through a run. A cell that has not run prints as ``-``.

    ./run python scripts/settings_table.py                 # 3 and 4 bits, every tree
    ./run python scripts/settings_table.py --bits 3 --trees wide_state true_label
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from lstm_ptq.artifacts import read_json
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.trees import tree_run

SCHEMES = ("class_conditional", "class_unconditional", "imbalanced_0.5", "classes_1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="the project (default: .)")
    parser.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    parser.add_argument("--trees", nargs="+", help="trees of params.yaml to show beside the main tree (default: every tree that is not a seed tree)")
    args = parser.parse_args()

    params = yaml.safe_load((args.root / "params.yaml").read_text())
    runs = [tree_run(args.root, params, name) for name in params.get("trees") or {}]
    runs = [run for run in runs if (run.name in args.trees if args.trees else not run.seed_only)]
    rows = [("main", "paper-literal: everything at the bit width", ProjectPaths(args.root), None)]
    rows += [(run.name, run.changes, run.paths, run) for run in runs]

    print("| dataset | model | bits | tree | its settings | float | " + " | ".join(args.schemes) + " |")
    print("|---" * (6 + len(args.schemes)) + "|")
    for dataset in params["grid"]["datasets"]:
        for model_type in params["grid"]["model_types"]:
            for bits in args.bits:
                for name, changes, paths, run in rows:
                    if run is not None and (dataset not in run.datasets or model_type not in run.model_types or bits not in run.bit_widths):
                        continue
                    cells, float_accuracy = [], None
                    for scheme in args.schemes:
                        path = paths.calibrate_metrics(dataset, model_type, bits, scheme)
                        if not path.is_file():
                            cells.append("-")
                            continue
                        metrics = read_json(path, dict)
                        float_accuracy = metrics["float_accuracy"]
                        cells.append(f"{100 * metrics['accuracy']:.1f}")
                    if float_accuracy is None:
                        continue
                    print(f"| {dataset} | {model_type} | {bits} | `{name}` | {changes} | {100 * float_accuracy:.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
