"""Every figure of the pipeline: PNG for people, CSV series for ``dvc plots``.

- PTQ grid (paper Figures 6, 7, 8 and 11) from the ``ptq_grid`` frame;
- accuracy under input noise (Figures 9 and 10) from the ``noise_grid`` frame;
- clean-trained vs noise-trained generative model (Figure 16).

The CSV series are wide tables built with pandas from the long grids; file names and columns are part
of the pipeline's outputs (``dvc.yaml`` ``plots``), so they do not change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .artifacts import write_frame


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _matches(grid: pd.DataFrame, match: Mapping[str, Any]) -> pd.Series:
    mask = pd.Series(True, index=grid.index)
    for key, value in match.items():
        mask &= grid[key] == value
    return mask


def wide_table(grid: pd.DataFrame, key: str, keys: Sequence[Any], columns: Mapping[str, Mapping[str, Any]], value: str) -> pd.DataFrame:
    """One row per ``keys`` entry (column ``key``), one column per line: the first ``value`` of the
    grid rows matching the line's filter at that key, empty where none does."""
    table = pd.DataFrame({key: pd.Series(list(keys), dtype=object)})
    for column, match in columns.items():
        hits = grid.loc[_matches(grid, match)].drop_duplicates(key).set_index(key)[value]
        table[column] = pd.Series([hits.get(k) for k in keys], dtype=object)
    return table


def _percent(values: pd.Series) -> list[float]:
    return [100 * float(v) if v is not None else float("nan") for v in values]


# --------------------------------------------------------------------------------------------------
# PTQ grid: Figures 6, 7, 8 and 11
# --------------------------------------------------------------------------------------------------

PTQ_FIGURES = {
    # name: (scheme, value, title)
    "figure6": ("class_unconditional", "accuracy", "Figure 6: accuracy, class-unconditional calibration"),
    "figure7": ("class_conditional", "accuracy", "Figure 7: accuracy, class-conditional calibration"),
    "figure8": ("class_conditional", "accuracy_drop", "Figure 8: accuracy drop vs float, class-conditional calibration"),
}


def ptq_series(grid: pd.DataFrame, dataset: str, columns: Mapping[str, tuple[str, str]], value: str, bit_widths: Sequence[int]) -> pd.DataFrame:
    """Wide table: one row per bit width (highest first), one column per (model, scheme) line."""
    lines = {c: {"dataset": dataset, "model_type": m, "calibration_scheme": s} for c, (m, s) in columns.items()}
    return wide_table(grid, "bit_width", sorted(bit_widths, reverse=True), lines, value)


def write_ptq_figures(
    grid: pd.DataFrame, out_dir: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]
) -> list[Path]:
    """CSV series under ``out_dir`` and one PNG per figure; returns the files written."""
    plt = _pyplot()
    written: list[Path] = []
    for name, (scheme, value, title) in PTQ_FIGURES.items():
        if scheme not in schemes:
            continue
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = ptq_series(grid, dataset, {m: (m, scheme) for m in model_types}, value, bit_widths)
            path = out_dir / f"{name}_{dataset}.csv"
            write_frame(path, table)
            written.append(path)
            for model_type in model_types:
                axis.plot(list(table["bit_width"]), _percent(table[model_type]), marker="o", label=model_type)
                if value == "accuracy":
                    floats = grid.loc[_matches(grid, {"dataset": dataset, "model_type": model_type}), "float_accuracy"]
                    if len(floats):
                        axis.axhline(100 * floats.iloc[0], linestyle=":", linewidth=1, color=axis.lines[-1].get_color())
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
            table = ptq_series(grid, dataset, {s: (model_type, s) for s in schemes}, "accuracy", bit_widths)
            path = out_dir / f"figure11_{dataset}_{model_type}.csv"
            write_frame(path, table)
            written.append(path)
            axis = axes[i][j]
            for scheme in schemes:
                axis.plot(list(table["bit_width"]), _percent(table[scheme]), marker="o", label=scheme)
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


# --------------------------------------------------------------------------------------------------
# Noise: Figures 9 and 10
# --------------------------------------------------------------------------------------------------


def curve_table(grid: pd.DataFrame, levels: Sequence[float], columns: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Wide table for ``dvc plots``: one row per noise level, one column per line."""
    return wide_table(grid, "noise_level", levels, columns, "accuracy")


def write_noise_figures(
    grid: pd.DataFrame,
    out_dir: Path,
    datasets: Sequence[str],
    model_types: Sequence[str],
    bit_widths: Sequence[int],
    levels: Sequence[float],
    schemes: Sequence[str],
    noise_models: Sequence[str],
) -> list[Path]:
    """Figure 9 (float, per noise model) and Figure 10 (per scheme and noise model): CSV series and PNGs."""
    plt = _pyplot()
    written: list[Path] = []
    for name in noise_models:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = curve_table(grid, levels, {m: {"dataset": dataset, "model_type": m, "precision": "float", "noise_model": name} for m in model_types})
            path = out_dir / f"figure9_{dataset}_{name}.csv"
            write_frame(path, table)
            written.append(path)
            for model_type in model_types:
                axis.plot(levels, _percent(table[model_type]), marker="o", label=model_type)
            axis.set(title=dataset, xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
            axis.grid(alpha=0.3)
            axis.legend()
        fig.suptitle(f"Figure 9: float accuracy vs noise level ({name})", fontsize=10)
        fig.tight_layout()
        written.append(out_dir / f"figure9_{name}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

        for scheme in schemes:
            fig, axes = plt.subplots(len(model_types), len(datasets), figsize=(5.5 * len(datasets), 4 * len(model_types)), squeeze=False)
            for j, dataset in enumerate(datasets):
                for i, model_type in enumerate(model_types):
                    base = {"dataset": dataset, "model_type": model_type, "noise_model": name}
                    columns = {f"w{b}": {**base, "precision": f"w{b}", "calibration_scheme": scheme} for b in sorted(bit_widths, reverse=True)}
                    columns["float"] = {**base, "precision": "float"}
                    table = curve_table(grid, levels, columns)
                    path = out_dir / f"figure10_{dataset}_{model_type}_{scheme}_{name}.csv"
                    write_frame(path, table)
                    written.append(path)
                    axis = axes[i][j]
                    for column in columns:
                        style = {"linestyle": ":", "color": "black"} if column == "float" else {"marker": "o"}
                        axis.plot(levels, _percent(table[column]), label=column, **style)
                    quantized = grid.loc[_matches(grid, base) & (grid["precision"] != "float"), "documents"]
                    documents = "/".join(map(str, sorted(set(quantized))))
                    axis.set(title=f"{dataset}, {model_type} ({documents} test docs)", xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
                    axis.grid(alpha=0.3)
                    axis.legend(fontsize=7)
            fig.suptitle(f"Figure 10: quantized accuracy vs noise level\n{scheme} calibration, {name} (dotted: float, whole test split)", fontsize=10)
            fig.tight_layout()
            written.append(out_dir / f"figure10_{scheme}_{name}.png")
            fig.savefig(written[-1], dpi=120)
            plt.close(fig)
    return written


# --------------------------------------------------------------------------------------------------
# Figure 16
# --------------------------------------------------------------------------------------------------

FIGURE16_COLUMNS = ["bit_width", "clean_trained", "noise_trained"]


def write_figure16(
    tables: Mapping[str, pd.DataFrame], floats: Mapping[str, Mapping[str, float]], out_dir: Path, level: float, eval_level: float, scheme: str
) -> list[Path]:
    """Per dataset: ``figure16_<dataset>.csv`` (one row per bit width, one column per training tree)
    and one panel of ``figure16.png`` (dotted: the float models)."""
    plt = _pyplot()
    written: list[Path] = []
    trees = FIGURE16_COLUMNS[1:]
    fig, axes = plt.subplots(1, max(len(tables), 1), figsize=(5.5 * max(len(tables), 1), 4), squeeze=False)
    for axis, (dataset, table) in zip(axes[0], tables.items()):
        path = out_dir / f"figure16_{dataset}.csv"
        write_frame(path, table[FIGURE16_COLUMNS])
        written.append(path)
        for name in trees:
            line = axis.plot(list(table["bit_width"]), _percent(table[name]), marker="o", label=name.replace("_", " "))[0]
            axis.axhline(100 * floats[dataset][name], linestyle=":", linewidth=1, color=line.get_color())
        axis.set(title=dataset, xlabel="bit width", ylabel=f"test accuracy (%) at noise {eval_level:g}")
        axis.invert_xaxis()
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"Figure 16: generative model trained with noise {level:g} vs clean\n{scheme} calibration (dotted: float)", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "figure16.png", dpi=120)
    plt.close(fig)
    written.append(out_dir / "figure16.png")
    return written
