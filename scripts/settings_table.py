"""Print the composition comparison under each setting of the study, from whichever calibrate cells have run.

The findings report's "Accuracy by setting at low bit widths" gives the same numbers once the whole study
has run; this script reads only the per-cell files (``metrics/calibrate`` of the main tree and of every
tree of params.yaml), so it also works part way through a run. A cell that has not run prints as ``-``.

    ./run python scripts/settings_table.py                 # 3 and 4 bits, every tree
    ./run python scripts/settings_table.py --bits 3 --trees wide_state true_label
    ./run dvc repro $(./run python scripts/settings_table.py --targets)   # run exactly those cells
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from lstm_ptq.artifacts import read_json
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.trees import tree_run

SCHEMES = ("class_conditional", "class_unconditional", "pseudo_class_conditional", "imbalanced_0.5", "classes_3", "classes_2", "classes_1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="the project (default: .)")
    parser.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES))
    parser.add_argument("--targets", action="store_true", help="print the cells' dvc stage addresses instead (for dvc repro)")
    parser.add_argument("--trees", nargs="+", help="trees of params.yaml to show beside the main tree (default: every tree that is not a seed tree)")
    args = parser.parse_args()

    params = yaml.safe_load((args.root / "params.yaml").read_text())
    runs = [tree_run(args.root, params, name) for name in params.get("trees") or {}]
    runs = [run for run in runs if (run.name in args.trees if args.trees else not run.seed_only)]
    rows = [("main", "paper-literal: everything at the bit width", ProjectPaths(args.root), None)]
    rows += [(run.name, run.changes, run.paths, run) for run in runs]

    cells = [
        (dataset, model_type, bits, name, paths, run)
        for dataset in params["grid"]["datasets"]
        for model_type in params["grid"]["model_types"]
        for bits in args.bits
        for name, _changes, paths, run in rows
        if run is None or (dataset in run.datasets and model_type in run.model_types and bits in run.bit_widths)
    ]
    if args.targets:
        for dataset, model_type, bits, name, _paths, run in cells:
            # the calibrate cells have a dvc.yaml per dataset and model type (scripts/generate_dvc_yaml.py)
            family = "calibrate" if run is None else f"{name}_calibrate"
            stage = f"pipelines/{family}-{dataset}-{model_type}/dvc.yaml:{family}"
            print("\n".join(f"{stage}@{dataset}-{model_type}-{bits}-{scheme}" for scheme in args.schemes))
        return
    print("| dataset | model | bits | tree | float | " + " | ".join(args.schemes) + " |")
    print("|---" * (5 + len(args.schemes)) + "|")
    for dataset, model_type, bits, name, paths, _run in cells:
        accuracies, float_accuracy = [], None
        for scheme in args.schemes:
            path = paths.calibrate_metrics(dataset, model_type, bits, scheme)
            if not path.is_file():
                accuracies.append("-")
                continue
            metrics = read_json(path, dict)
            float_accuracy = metrics["float_accuracy"]
            accuracies.append(f"{100 * metrics['accuracy']:.1f}")
        if float_accuracy is not None:
            print(f"| {dataset} | {model_type} | {bits} | `{name}` | {100 * float_accuracy:.1f} | " + " | ".join(accuracies) + " |")
    print()
    for name, changes, _, _ in rows:
        print(f"- `{name}`: {changes}")


if __name__ == "__main__":
    main()
