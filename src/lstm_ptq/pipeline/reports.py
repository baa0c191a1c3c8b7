"""Report stages: the aggregate tables and the paper's figures drawn from every cell's results.

``table1`` (Table 1), ``ptq_report`` (metrics/ptq_grid.csv, Figures 6, 7, 8, 11), ``noise_report``
(metrics/noise_grid.csv, Figures 9 and 10), ``figure16`` (section 7) and ``summary`` (metrics/summary.json:
the headline numbers, the project's only DVC metric, so that ``dvc exp show`` stays a readable table).
The cell stages never import this module or :mod:`lstm_ptq.plots`, so a change to a figure reruns only
the reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..artifacts import atomic_write_text, read_json, write_frame, write_json
from ..noise import level_name
from ..noise_training import MODEL_TYPE, SCHEME
from ..paths import ProjectPaths
from ..plots import write_figure16, write_noise_figures, write_ptq_figures
from ..reports import PAPER_TABLE1, table1_markdown
from ..settings import GridSettings, NoiseSettings, NoiseTrainingSettings
from ..stats import mean_interval, wilson_interval
from .trees import TreeRun

TABLE1_MODELS = ("generative", "discriminative")


def table1_stage(root: Path, datasets: Sequence[str]) -> str:
    """Table 1 beside the paper's values, as CSV and markdown under metrics/; returns the markdown."""
    paths = ProjectPaths(root)
    records = []
    for dataset in datasets:
        for model_type in TABLE1_MODELS:
            metrics = read_json(paths.evaluate_metrics(dataset, model_type))
            records.append(
                {
                    "dataset": dataset,
                    "model": model_type,
                    "accuracy_pct": f"{100 * metrics['accuracy']:.2f}",
                    "paper_accuracy_pct": f"{PAPER_TABLE1[(dataset, model_type)]:.2f}",
                    "train_rows": metrics["train_rows"],
                    "test_rows": metrics["documents"],
                }
            )
    table = pd.DataFrame(records, dtype=object)
    write_frame(paths.table1_csv(), table)
    text = table1_markdown(table)
    atomic_write_text(paths.table1_md(), text)
    return text


GRID_COLUMNS = [
    "dataset",
    "model_type",
    "bit_width",
    "calibration_scheme",
    "cell_state_bit_width",
    "gate_bit_width",
    "decoder_feeding",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "documents",
    "float_accuracy",
    "accuracy_drop",
    "mean_loss",
    "calibration_documents",
    "final_layer_algorithm",
    "gpfq_changed_weight_fraction",
    "final_layer_error_before_gpfq",
    "final_layer_error_after_gpfq",
    "hidden_zero_fraction",
]


def collect_grid(paths: ProjectPaths, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str]) -> pd.DataFrame:
    """Every calibrate cell's metrics as one long frame (columns :data:`GRID_COLUMNS`)."""
    records = []
    for dataset in datasets:
        for model_type in model_types:
            for bit_width in bit_widths:
                for scheme in schemes:
                    metrics = read_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme))
                    record = {key: metrics.get(key) for key in GRID_COLUMNS}
                    record["hidden_zero_fraction"] = metrics.get("hidden_state", {}).get("zero_h_fraction")
                    low, high = wilson_interval(metrics["accuracy"], metrics["documents"])
                    record["accuracy_low"], record["accuracy_high"] = round(low, 6), round(high, 6)
                    records.append(record)
    return pd.DataFrame(records, columns=GRID_COLUMNS, dtype=object)


SEED_COLUMNS = [
    "dataset",
    "model_type",
    "bit_width",
    "calibration_scheme",
    "seeds",
    "accuracy_mean",
    "accuracy_low",
    "accuracy_high",
    "drop_mean",
    "drop_low",
    "drop_high",
    "per_seed_accuracy",
]


def seed_grid_file(paths: ProjectPaths) -> Path:
    """metrics/ptq_grid_seeds.csv: every cell of the grid over the training seeds that ran it."""
    return paths.ptq_grid().with_name("ptq_grid_seeds.csv")


def collect_seed_grid(main: pd.DataFrame, seed: int, seed_trees: Sequence[TreeRun]) -> pd.DataFrame:
    """Per cell of the main grid: the accuracy and the drop against each seed's own float model, averaged over
    the main tree and every seed tree that ran the cell, with Student-t 95% intervals over the seeds (NaN
    bounds for a cell only one seed ran; columns :data:`SEED_COLUMNS`)."""
    runs = [(seed, main)]
    for tree in seed_trees:
        datasets = [d for d in tree.datasets if d in set(main["dataset"])]
        runs.append((tree.seed, collect_grid(tree.paths, datasets, tree.model_types, tree.bit_widths, tree.schemes)))
    keys = ["dataset", "model_type", "bit_width", "calibration_scheme"]
    stacked = pd.concat([frame.assign(seed=s) for s, frame in runs], ignore_index=True)
    records = []
    for key, cell in stacked.groupby(keys, sort=False):
        accuracy = mean_interval(cell["accuracy"].astype(float))
        drop = mean_interval(cell["accuracy_drop"].astype(float))
        per_seed = " ".join(f"{s}:{a:.6f}" for s, a in zip(cell["seed"], cell["accuracy"], strict=True))
        records.append([*key, len(cell), accuracy.mean, accuracy.low, accuracy.high, drop.mean, drop.low, drop.high, per_seed])
    frame = pd.DataFrame(records, columns=SEED_COLUMNS)
    return frame.round({c: 6 for c in SEED_COLUMNS[5:11]})


def ptq_report_stage(root: Path, grid: GridSettings, seed: int, seed_trees: Sequence[TreeRun] = ()) -> pd.DataFrame:
    """metrics/ptq_grid.csv (each accuracy with its Wilson interval over the test documents),
    metrics/ptq_grid_seeds.csv (the cells over training seeds) and Figures 6, 7, 8, 11 with both intervals."""
    paths = ProjectPaths(root)
    axes = (grid.datasets, grid.model_types, grid.bit_widths, grid.calibration_schemes)
    frame = collect_grid(paths, *axes)
    seeds = collect_seed_grid(frame, seed, seed_trees)
    write_frame(paths.ptq_grid(), frame)
    write_frame(seed_grid_file(paths), seeds)
    write_ptq_figures(frame, paths.ptq_plots(), *axes, seeds=seeds)
    return frame


NOISE_GRID_COLUMNS = ["dataset", "model_type", "precision", "calibration_scheme", "noise_model", "noise_level", "accuracy", "documents"]


def collect_noise_grid(paths: ProjectPaths, grid: GridSettings, levels: Sequence[float]) -> pd.DataFrame:
    """Long frame: float curves (``precision`` = float, on the whole test split) and quantized ones (``w<b>``)."""
    records: list[dict[str, Any]] = []
    for dataset in grid.datasets:
        for model_type in grid.model_types:
            for name in grid.noise_quantized_noise_models:
                cells = [("float", "", read_json(paths.float_noise_metrics(dataset, model_type, name)))]
                for scheme in grid.noise_quantized_schemes:
                    cells += [(f"w{b}", scheme, read_json(paths.quantized_noise_metrics(dataset, model_type, b, scheme, name))) for b in grid.bit_widths]
                for precision, scheme, metrics in cells:
                    for level in levels:
                        records.append(
                            {
                                "dataset": dataset,
                                "model_type": model_type,
                                "precision": precision,
                                "calibration_scheme": scheme,
                                "noise_model": name,
                                "noise_level": level,
                                "accuracy": metrics[f"accuracy@{level_name(level)}"],
                                "documents": metrics["documents"],
                            }
                        )
    return pd.DataFrame(records, columns=NOISE_GRID_COLUMNS, dtype=object)


def noise_report_stage(root: Path, grid: GridSettings, noise: NoiseSettings) -> pd.DataFrame:
    """metrics/noise_grid.csv and Figures 9 and 10 from every float and quantized noise curve."""
    paths = ProjectPaths(root)
    frame = collect_noise_grid(paths, grid, noise.levels)
    write_frame(paths.noise_grid(), frame)
    write_noise_figures(
        frame,
        paths.noise_plots(),
        grid.datasets,
        grid.model_types,
        grid.bit_widths,
        noise.levels,
        grid.noise_quantized_schemes,
        grid.noise_quantized_noise_models,
    )
    return frame


def figure16_stage(root: Path, grid: GridSettings, settings: NoiseTrainingSettings) -> dict[str, list[dict[str, Any]]]:
    """Accuracy at ``eval_level`` noise of the clean-trained and the noise-trained generative model,
    class-conditionally calibrated, per bit width (rows ``float`` included): CSV per dataset, one PNG
    and metrics/figure16.json."""
    key = f"accuracy@{level_name(settings.eval_level)}"
    main = ProjectPaths(root)
    trees = {"clean_trained": main, "noise_trained": main.noise_trained()}
    frames: dict[str, pd.DataFrame] = {}
    floats: dict[str, dict[str, float]] = {}
    bands: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for dataset in grid.noise_trained_datasets:
        widths = sorted(grid.bit_widths, reverse=True)
        cells = {
            name: [read_json(paths.quantized_noise_metrics(dataset, MODEL_TYPE, b, SCHEME, settings.noise_model)) for b in widths]
            for name, paths in trees.items()
        }
        frames[dataset] = pd.DataFrame([{"bit_width": b, **{name: cells[name][i][key] for name in trees}} for i, b in enumerate(widths)], dtype=object)
        bands[dataset] = {name: [wilson_interval(cell[key], cell["documents"]) for cell in cells[name]] for name in trees}
        floats[dataset] = {name: read_json(paths.float_noise_metrics(dataset, MODEL_TYPE, settings.noise_model))[key] for name, paths in trees.items()}
    write_figure16(frames, floats, main.figure16_plots(), settings.level, settings.eval_level, SCHEME, bands)
    tables = {dataset: frame.to_dict("records") + [{"bit_width": "float", **floats[dataset]}] for dataset, frame in frames.items()}
    write_json(main.figure16_metrics(), {dataset: {str(r["bit_width"]): {k: r[k] for k in trees} for r in rows} for dataset, rows in tables.items()})
    return tables


HEADLINE_BIT_WIDTHS = (4, 3)
HEADLINE_SCHEMES = ("class_conditional", "class_unconditional")


def summary_stage(root: Path, grid: GridSettings) -> dict[str, Any]:
    paths = ProjectPaths(root)
    bit_widths = [b for b in HEADLINE_BIT_WIDTHS if b in grid.bit_widths]
    schemes = [s for s in HEADLINE_SCHEMES if s in grid.calibration_schemes]
    summary: dict[str, Any] = {}
    for dataset in grid.datasets:
        for model_type in grid.model_types:
            cell: dict[str, Any] = {"float": round(read_json(paths.evaluate_metrics(dataset, model_type))["accuracy"], 4)}
            for bit_width in bit_widths:
                cell[f"w{bit_width}"] = {
                    scheme: round(read_json(paths.calibrate_metrics(dataset, model_type, bit_width, scheme))["accuracy"], 4) for scheme in schemes
                }
            summary.setdefault(dataset, {})[model_type] = cell
    write_json(paths.summary(), summary)
    return summary
