"""The PTQ grid as one CSV and the paper's Figures 6, 7, 8 and 11 (PNG for people, CSV for ``dvc plots``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .artifacts import read_json, write_csv

GRID_COLUMNS = [
    "dataset", "model_type", "bit_width", "calibration_scheme", "accuracy", "float_accuracy", "accuracy_drop",
    "mean_loss", "calibration_documents", "final_layer_algorithm", "gpfq_changed_weight_fraction",
    "final_layer_error_before_gpfq", "final_layer_error_after_gpfq", "hidden_zero_fraction",
    "gpfq_seconds", "evaluate_seconds",
]


def calibrate_metrics_path(root: Path, dataset: str, model_type: str, bit_width: int, scheme: str) -> Path:
    return root / "metrics" / "calibrate" / dataset / model_type / f"w{bit_width}" / f"{scheme}.json"


def collect_grid(root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for dataset in datasets:
        for model_type in model_types:
            for bit_width in bit_widths:
                for scheme in schemes:
                    metrics = read_json(calibrate_metrics_path(root, dataset, model_type, bit_width, scheme))
                    row = {key: metrics.get(key) for key in GRID_COLUMNS}
                    row["hidden_zero_fraction"] = metrics.get("hidden_state", {}).get("zero_h_fraction")
                    rows.append(row)
    return rows


def _series(rows: list[dict[str, Any]], dataset: str, columns: dict[str, tuple[str, str]], value: str, bit_widths: Sequence[int]) -> list[dict[str, Any]]:
    """Wide table: one row per bit width, one column per (model, scheme) line."""
    table = []
    for bit_width in sorted(bit_widths, reverse=True):
        entry: dict[str, Any] = {"bit_width": bit_width}
        for column, (model_type, scheme) in columns.items():
            match = [r for r in rows if r["dataset"] == dataset and r["model_type"] == model_type and r["bit_width"] == bit_width and r["calibration_scheme"] == scheme]
            entry[column] = match[0][value] if match else None
        table.append(entry)
    return table


FIGURES = {
    # name: (scheme(s), value, title)
    "figure6": ("class_unconditional", "accuracy", "Figure 6: accuracy, class-unconditional calibration"),
    "figure7": ("class_conditional", "accuracy", "Figure 7: accuracy, class-conditional calibration"),
    "figure8": ("class_conditional", "accuracy_drop", "Figure 8: accuracy drop vs float, class-conditional calibration"),
}


def write_figures(rows: list[dict[str, Any]], out_dir: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> list[Path]:
    """CSV series under ``out_dir`` and one PNG per figure; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    for name, (scheme, value, title) in FIGURES.items():
        if scheme not in schemes:
            continue
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = _series(rows, dataset, {m: (m, scheme) for m in model_types}, value, bit_widths)
            path = out_dir / f"{name}_{dataset}.csv"
            write_csv(path, table, list(table[0]))
            written.append(path)
            for model_type in model_types:
                axis.plot([r["bit_width"] for r in table], [100 * r[model_type] for r in table], marker="o", label=model_type)
                if value == "accuracy":
                    floats = [r["float_accuracy"] for r in rows if r["dataset"] == dataset and r["model_type"] == model_type]
                    if floats:
                        axis.axhline(100 * floats[0], linestyle=":", linewidth=1, color=axis.lines[-1].get_color())
            axis.set_title(dataset)
            axis.set_xlabel("bit width")
            axis.set_ylabel("accuracy drop (points)" if value == "accuracy_drop" else "test accuracy (%)")
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend()
        fig.suptitle(title + " (dotted: float)" if value == "accuracy" else title)
        fig.tight_layout()
        png = out_dir / f"{name}.png"
        fig.savefig(png, dpi=120)
        plt.close(fig)
        written.append(png)

    # Figure 11 (class coverage) and every other scheme: one panel per dataset and model.
    fig, axes = plt.subplots(len(model_types), len(datasets), figsize=(5.5 * len(datasets), 4 * len(model_types)), squeeze=False)
    for j, dataset in enumerate(datasets):
        for i, model_type in enumerate(model_types):
            table = _series(rows, dataset, {s: (model_type, s) for s in schemes}, "accuracy", bit_widths)
            path = out_dir / f"figure11_{dataset}_{model_type}.csv"
            write_csv(path, table, list(table[0]))
            written.append(path)
            axis = axes[i][j]
            for scheme in schemes:
                axis.plot([r["bit_width"] for r in table], [100 * r[scheme] for r in table], marker="o", label=scheme)
            axis.set_title(f"{dataset}, {model_type}")
            axis.set_xlabel("bit width")
            axis.set_ylabel("test accuracy (%)")
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    fig.suptitle("Figure 11: accuracy by calibration scheme (class coverage)")
    fig.tight_layout()
    png = out_dir / "figure11.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    written.append(png)
    return written


def ptq_report_stage(root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> list[dict[str, Any]]:
    rows = collect_grid(root, datasets, model_types, bit_widths, schemes)
    write_csv(root / "metrics" / "ptq_grid.csv", rows, GRID_COLUMNS)
    write_figures(rows, root / "plots" / "ptq", datasets, model_types, bit_widths, schemes)
    return rows
