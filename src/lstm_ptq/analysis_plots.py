"""The section 6 figures: KS statistics (Figures 12-14), token-loss densities (Figure 15) and per-class effects.

PNG for people, CSV series for ``dvc plots`` (one row per bit width, one column per line; Figure 15's
densities on one shared grid per panel). Drawn from the tables of :mod:`lstm_ptq.pipeline.analysis`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .artifacts import save_figure, write_frame
from .plots import _pyplot, wide_table

KS_FIGURES = {
    12: "Figure 12: KS statistic, final-layer weights after calibration + GPFQ vs float",
    13: "Figure 13: KS statistic, activations of the weight-quantized model before calibration, between calibration sets",
    14: "Figure 14: KS statistic, final-layer outputs of the calibrated model vs float (common test documents)",
}


ROUND_TO_NEAREST = "round_to_nearest"  # Figure 12's reference line: the quantized weights before calibration and GPFQ


def ks_lines(ks: pd.DataFrame, figure: int) -> dict[str, dict[str, Any]]:
    """The lines of one KS figure: a column name per (layer, scheme) with its row filter."""
    rows = ks.loc[ks["figure"] == figure]
    lines = {}
    for layer, scheme, against in rows[["layer", "scheme", "against"]].drop_duplicates().itertuples(index=False):
        if figure == 13:
            name = f"{layer}_{scheme}_vs_{against}"
        elif scheme == "none":
            name = ROUND_TO_NEAREST
        else:
            name = scheme
        lines[name] = {"figure": figure, "layer": layer, "scheme": scheme}
    return lines


def write_ks_figures(ks: pd.DataFrame, out_dir: Path, panels: Sequence[tuple[str, str]], bit_widths: Sequence[int]) -> list[Path]:
    """Figures 12-14: one panel per (dataset, model type), KS statistic against bit width, one line per
    scheme (Figure 13: per layer); filled markers where the KS p-value is below 0.05."""
    plt = _pyplot()
    written: list[Path] = []
    widths = sorted(bit_widths, reverse=True)
    for figure, title in KS_FIGURES.items():
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
        for axis, (dataset, model_type) in zip(axes[0], panels):
            rows = ks.loc[(ks["dataset"] == dataset) & (ks["model_type"] == model_type)]
            lines = ks_lines(rows, figure)
            table = wide_table(rows, "bit_width", widths, lines, "ks_statistic")
            path = out_dir / f"figure{figure}_{dataset}_{model_type}.csv"
            write_frame(path, table)
            written.append(path)
            p_values = wide_table(rows, "bit_width", widths, lines, "p_value")
            for name in lines:
                values = [float("nan") if v is None else float(v) for v in table[name]]
                line = axis.plot(widths, values, marker="o", linestyle="--" if name == ROUND_TO_NEAREST else "-", label=name)[0]
                hollow = [w for w, p in zip(widths, p_values[name]) if p is not None and float(p) >= 0.05]
                if hollow:
                    axis.plot(hollow, [values[widths.index(w)] for w in hollow], "o", markerfacecolor="white", color=line.get_color())
            axis.set_title(f"{dataset}, {model_type}")
            axis.set_xlabel("bit width")
            axis.set_ylabel("KS statistic")
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        fig.suptitle(title + " (hollow: p >= 0.05)", fontsize=10)
        fig.tight_layout()
        png = out_dir / f"figure{figure}.png"
        save_figure(fig, png)
        plt.close(fig)
        written.append(png)
    return written


def shared_grid_densities(curves: pd.DataFrame, kind: str, points: int) -> pd.DataFrame:
    """One ``kind`` (loss or difference) of Figure 15's density curves on one shared grid: column ``x``, then one
    column per condition (its density interpolated, zero outside its own grid)."""
    rows = curves.loc[curves["kind"] == kind]
    x = rows["x"].astype(float)
    grid = np.linspace(x.min(), x.max(), points)
    table = pd.DataFrame({"x": pd.Series(np.round(grid, 6), dtype=object)})
    for condition, part in rows.groupby("condition", sort=False):
        density = np.interp(grid, part["x"].astype(float), part["density"].astype(float), left=0.0, right=0.0)
        table[condition] = pd.Series(np.round(density, 8), dtype=object)
    return table


def write_figure15(curves: Mapping[str, pd.DataFrame], summaries: Mapping[str, Mapping[str, Any]], out_dir: Path, points: int) -> list[Path]:
    """Figure 15 per dataset: densities of the token-level losses, and of the per-token differences against
    the float model with each difference's maximum in the legend (as the paper's legend does)."""
    plt = _pyplot()
    written: list[Path] = []
    datasets = list(curves)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        summary = summaries[dataset]
        for col, kind in enumerate(("loss", "difference")):
            table = shared_grid_densities(curves[dataset], kind, points)
            path = out_dir / f"figure15_{dataset}_{kind}.csv"
            write_frame(path, table)
            written.append(path)
            axis = axes[row][col]
            colours = {name: f"C{i}" for i, name in enumerate(summary["conditions"])}  # one colour per condition in both panels
            for condition in table.columns[1:]:
                stats = summary["conditions"][condition]
                label = f"{condition} (max {stats['max_difference']:.2f})" if kind == "difference" else f"{condition} (mean {stats['mean_loss']:.2f})"
                axis.plot(table["x"].astype(float), table[condition].astype(float), label=label, color=colours[condition])
            axis.set_title(f"{dataset}: token-level {'loss' if kind == 'loss' else 'loss difference vs float'}, {summary['bit_width']}-bit")
            axis.set_xlabel("cross-entropy (nats)" if kind == "loss" else "loss - float loss (nats)")
            axis.set_ylabel("density")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    fig.suptitle("Figure 15: kernel density of the generative model's token-level losses", fontsize=10)
    fig.tight_layout()
    png = out_dir / "figure15.png"
    save_figure(fig, png)
    plt.close(fig)
    written.append(png)
    return written


def write_per_class_figure(
    summary: pd.DataFrame, out_dir: Path, panels: Sequence[tuple[str, str]], bit_widths: Sequence[int], schemes: Sequence[str]
) -> list[Path]:
    """Per (dataset, model type): the spread (standard deviation over classes) of the per-class accuracy drop,
    and the quantized/float ratio of the mean score variance, against bit width, one line per scheme."""
    plt = _pyplot()
    written: list[Path] = []
    widths = sorted(bit_widths, reverse=True)
    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 7.5), squeeze=False)
    for j, (dataset, model_type) in enumerate(panels):
        rows = summary.loc[(summary["dataset"] == dataset) & (summary["model_type"] == model_type)]
        lines = {s: {"scheme": s} for s in schemes}
        for i, (value, label) in enumerate((("drop_std", "std of per-class accuracy drop (points)"), ("variance_ratio", "score variance, quantized / float"))):
            table = wide_table(rows, "bit_width", widths, lines, value)
            path = out_dir / f"per_class_{value}_{dataset}_{model_type}.csv"
            write_frame(path, table)
            written.append(path)
            axis = axes[i][j]
            scale = 100 if value == "drop_std" else 1
            for scheme in schemes:
                axis.plot(widths, [float("nan") if v is None else scale * float(v) for v in table[scheme]], marker="o", label=scheme)
            if value == "variance_ratio":
                axis.axhline(1.0, color="grey", linewidth=1, linestyle=":")
            axis.set_title(f"{dataset}, {model_type}")
            axis.set_xlabel("bit width")
            axis.set_ylabel(label)
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6)
    fig.suptitle("Per-class effects of PTQ: spread of the accuracy drop over classes, and score variance vs float", fontsize=10)
    fig.tight_layout()
    png = out_dir / "per_class.png"
    save_figure(fig, png)
    plt.close(fig)
    written.append(png)
    return written
