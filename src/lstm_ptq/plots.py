"""Every figure of the pipeline: PNG for people, CSV series for ``dvc plots``.

- PTQ grid (paper Figures 6, 7, 8 and 11) from the ``ptq_grid`` frame (and the cells over training seeds);
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

from .artifacts import save_figure, write_frame
from .stats import wilson_interval


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


BAND_NOTE = "bands: 95% Wilson interval over the test documents"
SEED_NOTE = "bars: mean and 95% t-interval over {n} training seeds"


def _band(axis: Any, x: Sequence[float], low: Sequence[float], high: Sequence[float], color: str) -> None:
    axis.fill_between(list(x), low, high, color=color, alpha=0.15, linewidth=0)


def _seed_bars(axis: Any, seeds: pd.DataFrame | None, match: Mapping[str, Any], value: str, offset: float, color: str) -> int:
    """Mean and Student-t interval over the training seeds at the bit widths several seeds ran (value: accuracy or drop);
    returns the largest number of seeds drawn (0: none)."""
    if seeds is None:
        return 0
    cells = seeds.loc[_matches(seeds, match) & (seeds["seeds"] > 1)]
    if cells.empty:
        return 0
    mean = 100 * cells[f"{value}_mean"].astype(float)
    errors = [mean - 100 * cells[f"{value}_low"].astype(float), 100 * cells[f"{value}_high"].astype(float) - mean]
    axis.errorbar(cells["bit_width"].astype(float) + offset, mean, yerr=errors, fmt="s", markersize=3, capsize=3, color=color, linewidth=1)
    return int(cells["seeds"].max())


def write_ptq_figures(
    grid: pd.DataFrame,
    out_dir: Path,
    datasets: Sequence[str],
    model_types: Sequence[str],
    bit_widths: Sequence[int],
    schemes: Sequence[str],
    seeds: pd.DataFrame | None = None,
) -> list[Path]:
    """CSV series under ``out_dir`` and one PNG per figure; returns the files written. Every curve carries the
    Wilson band of its accuracies over the test documents; where ``seeds`` (reports.SEED_COLUMNS) holds cells
    run under several training seeds, Figures 6-8 add the mean over seeds with its t-interval beside the curve."""
    plt = _pyplot()
    written: list[Path] = []
    for name, (scheme, value, title) in PTQ_FIGURES.items():
        if scheme not in schemes:
            continue
        drawn_seeds = 0
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = ptq_series(grid, dataset, {m: (m, scheme) for m in model_types}, value, bit_widths)
            path = out_dir / f"{name}_{dataset}.csv"
            write_frame(path, table)
            written.append(path)
            for k, model_type in enumerate(model_types):
                line = axis.plot(list(table["bit_width"]), _percent(table[model_type]), marker="o", label=model_type)[0]
                low = _percent(ptq_series(grid, dataset, {model_type: (model_type, scheme)}, "accuracy_low", bit_widths)[model_type])
                high = _percent(ptq_series(grid, dataset, {model_type: (model_type, scheme)}, "accuracy_high", bit_widths)[model_type])
                floats = grid.loc[_matches(grid, {"dataset": dataset, "model_type": model_type}), "float_accuracy"]
                if value == "accuracy":
                    _band(axis, table["bit_width"], low, high, line.get_color())
                    if len(floats):
                        axis.axhline(100 * floats.iloc[0], linestyle=":", linewidth=1, color=line.get_color())
                elif len(floats):  # the drop's band: the quantized accuracy's interval, against the float accuracy
                    base = 100 * float(floats.iloc[0])
                    _band(axis, table["bit_width"], [base - h for h in high], [base - v for v in low], line.get_color())
                match = {"dataset": dataset, "model_type": model_type, "calibration_scheme": scheme}
                offset = 0.12 * (k - (len(model_types) - 1) / 2)
                drawn_seeds = max(drawn_seeds, _seed_bars(axis, seeds, match, "accuracy" if value == "accuracy" else "drop", offset, line.get_color()))
            axis.set_title(dataset)
            axis.set_xlabel("bit width")
            axis.set_ylabel("accuracy drop (points)" if value == "accuracy_drop" else "test accuracy (%)")
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend()
        notes = [BAND_NOTE] + ([SEED_NOTE.format(n=drawn_seeds)] if drawn_seeds else [])
        fig.suptitle((title + " (dotted: float)" if value == "accuracy" else title) + "\n" + "; ".join(notes), fontsize=10)
        fig.tight_layout()
        png = out_dir / f"{name}.png"
        save_figure(fig, png)
        plt.close(fig)
        written.append(png)

    # Figure 11 (class coverage) and every other scheme: one panel per dataset and model.
    fig, axes = plt.subplots(len(model_types), len(datasets), figsize=(5.5 * len(datasets), 4 * len(model_types)), squeeze=False)
    for j, dataset in enumerate(datasets):
        for i, model_type in enumerate(model_types):
            table = ptq_series(grid, dataset, {s: (model_type, s) for s in schemes}, "accuracy", bit_widths)
            low = ptq_series(grid, dataset, {s: (model_type, s) for s in schemes}, "accuracy_low", bit_widths)
            high = ptq_series(grid, dataset, {s: (model_type, s) for s in schemes}, "accuracy_high", bit_widths)
            path = out_dir / f"figure11_{dataset}_{model_type}.csv"
            write_frame(path, table)
            written.append(path)
            axis = axes[i][j]
            for scheme in schemes:
                line = axis.plot(list(table["bit_width"]), _percent(table[scheme]), marker="o", label=scheme)[0]
                _band(axis, table["bit_width"], _percent(low[scheme]), _percent(high[scheme]), line.get_color())
            axis.set_title(f"{dataset}, {model_type}")
            axis.set_xlabel("bit width")
            axis.set_ylabel("test accuracy (%)")
            axis.invert_xaxis()
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    fig.suptitle(f"Figure 11: accuracy by calibration scheme (class coverage)\n{BAND_NOTE}", fontsize=10)
    fig.tight_layout()
    png = out_dir / "figure11.png"
    save_figure(fig, png)
    plt.close(fig)
    written.append(png)
    return written


# --------------------------------------------------------------------------------------------------
# Noise: Figures 9 and 10
# --------------------------------------------------------------------------------------------------


def with_wilson(grid: pd.DataFrame) -> pd.DataFrame:
    """The noise grid with each accuracy's Wilson interval over its ``documents`` (columns accuracy_low, accuracy_high)."""
    bounds = [wilson_interval(float(a), int(n)) for a, n in zip(grid["accuracy"], grid["documents"], strict=True)]
    return grid.assign(accuracy_low=[b[0] for b in bounds], accuracy_high=[b[1] for b in bounds])


def _bounds(grid: pd.DataFrame, levels: Sequence[float], match: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    low = wide_table(grid, "noise_level", levels, {"x": match}, "accuracy_low")["x"]
    high = wide_table(grid, "noise_level", levels, {"x": match}, "accuracy_high")["x"]
    return _percent(low), _percent(high)


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
    """Figure 9 (float, per noise model) and Figure 10 (per scheme and noise model): CSV series and PNGs,
    each curve with the Wilson band of its accuracies over the test documents it was scored on."""
    plt = _pyplot()
    written: list[Path] = []
    grid = with_wilson(grid)
    for name in noise_models:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = curve_table(grid, levels, {m: {"dataset": dataset, "model_type": m, "precision": "float", "noise_model": name} for m in model_types})
            path = out_dir / f"figure9_{dataset}_{name}.csv"
            write_frame(path, table)
            written.append(path)
            for model_type in model_types:
                line = axis.plot(levels, _percent(table[model_type]), marker="o", label=model_type)[0]
                match = {"dataset": dataset, "model_type": model_type, "precision": "float", "noise_model": name}
                _band(axis, levels, *_bounds(grid, levels, match), line.get_color())
            axis.set(title=dataset, xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
            axis.grid(alpha=0.3)
            axis.legend()
        fig.suptitle(f"Figure 9: float accuracy vs noise level ({name})\n{BAND_NOTE}", fontsize=10)
        fig.tight_layout()
        written.append(out_dir / f"figure9_{name}.png")
        save_figure(fig, written[-1])
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
                    for column, match in columns.items():
                        style = {"linestyle": ":", "color": "black"} if column == "float" else {"marker": "o"}
                        line = axis.plot(levels, _percent(table[column]), label=column, **style)[0]
                        _band(axis, levels, *_bounds(grid, levels, match), line.get_color())
                    quantized = grid.loc[_matches(grid, base) & (grid["precision"] != "float"), "documents"]
                    documents = "/".join(map(str, sorted(set(quantized))))
                    axis.set(title=f"{dataset}, {model_type} ({documents} test docs)", xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
                    axis.grid(alpha=0.3)
                    axis.legend(fontsize=7)
            fig.suptitle(
                f"Figure 10: quantized accuracy vs noise level\n{scheme} calibration, {name} (dotted: float, whole test split); {BAND_NOTE}", fontsize=10
            )
            fig.tight_layout()
            written.append(out_dir / f"figure10_{scheme}_{name}.png")
            save_figure(fig, written[-1])
            plt.close(fig)
    return written


# --------------------------------------------------------------------------------------------------
# Figure 16
# --------------------------------------------------------------------------------------------------

FIGURE16_COLUMNS = ["bit_width", "clean_trained", "noise_trained"]


def write_figure16(
    tables: Mapping[str, pd.DataFrame],
    floats: Mapping[str, Mapping[str, float]],
    out_dir: Path,
    level: float,
    eval_level: float,
    scheme: str,
    bands: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]] | None = None,
) -> list[Path]:
    """Per dataset: ``figure16_<dataset>.csv`` (one row per bit width, one column per training tree)
    and one panel of ``figure16.png`` (dotted: the float models; ``bands``: each curve's Wilson intervals)."""
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
            if bands is not None:
                intervals = bands[dataset][name]
                _band(axis, table["bit_width"], [100 * low for low, _ in intervals], [100 * high for _, high in intervals], line.get_color())
        axis.set(title=dataset, xlabel="bit width", ylabel=f"test accuracy (%) at noise {eval_level:g}")
        axis.invert_xaxis()
        axis.grid(alpha=0.3)
        axis.legend()
    note = f"\n{BAND_NOTE}" if bands is not None else ""
    fig.suptitle(f"Figure 16: generative model trained with noise {level:g} vs clean\n{scheme} calibration (dotted: float){note}", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out_dir / "figure16.png")
    plt.close(fig)
    written.append(out_dir / "figure16.png")
    return written
