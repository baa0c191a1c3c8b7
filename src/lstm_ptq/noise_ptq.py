"""Quantized models under character-level input noise (paper section 5.5, Figure 10), and the noise
report: every noise curve as one CSV plus Figures 9 and 10 (PNG for people, CSV for ``dvc plots``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .artifacts import read_json, write_csv, write_json
from .calibration import check_scheme
from .config import get_typed, section
from .errors import ParamError
from .evaluation import evaluate, score_split
from .models import check_vocabulary_fits, load_float_model
from .noise import NoiseParams, level_name, load_noisy_split, noise_model
from .noise_training import MODEL_TYPE, SCHEME, VARIANT_ROOT, NoiseTrainingParams
from .preprocess import EncodedSplit
from .ptq import ProjectPaths as _PtqPaths
from .quantize import QuantSpec, load_quantized, quant_scorer


@dataclass(frozen=True)
class QuantNoiseParams:
    """The ``noise_quantized`` section: which calibrate cells are evaluated on which noisy test sets.

    ``schemes`` must be calibration schemes of the grid and ``noise_models`` noise models whose test
    sets are built (``noise.models``); ``test_documents`` evenly spaced test documents are scored at
    every level (the same documents at every level), ``None`` = the whole test split."""

    schemes: tuple[str, ...]
    noise_models: tuple[str, ...]
    test_documents: int | None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "QuantNoiseParams":
        where = "noise_quantized"
        node = section(params, where)
        grid_schemes = section(params, "calibration.schemes")
        built = NoiseParams.from_params(params).models
        schemes = get_typed(node, "schemes", list, where)
        noise_models = get_typed(node, "noise_models", list, where)
        if not schemes or not noise_models:
            raise ParamError(f"{where}: schemes and noise_models must each name at least one entry")
        for i, scheme in enumerate(schemes):
            check_scheme(str(scheme))
            if scheme not in grid_schemes:
                raise ParamError(f"{where}.schemes[{i}]: {scheme!r} is not in calibration.schemes {grid_schemes!r}, so it has no calibrated models")
        for i, name in enumerate(noise_models):
            noise_model(name, f"{where}.noise_models[{i}]")
            if name not in built:
                raise ParamError(f"{where}.noise_models[{i}]: {name!r} is not in noise.models {list(built)!r}, so it has no noisy test sets")
        documents = node.get("test_documents")
        if documents is not None:
            documents = get_typed(node, "test_documents", int, where)
            if documents < 1:
                raise ParamError(f"{where}.test_documents: {documents} must be >= 1, or null for the whole test split")
        return cls(tuple(schemes), tuple(noise_models), documents)


class ProjectPaths(_PtqPaths):
    def quantized_noise_metrics(self, dataset: str, model_type: str, bit_width: int, scheme: str, noise_model: str) -> Path:
        return self.root / "metrics" / "noise" / "quantized" / dataset / model_type / f"w{bit_width}" / scheme / f"{noise_model}.json"


def evenly_spaced(count: int, documents: int | None) -> np.ndarray:
    """``documents`` indices spread evenly over ``range(count)`` (all of them when None or larger)."""
    if documents is None or documents >= count:
        return np.arange(count)
    return np.linspace(0, count - 1, documents).round().astype(np.int64)


def _subset(split: EncodedSplit, rows: np.ndarray) -> EncodedSplit:
    return EncodedSplit(split.tokens[rows], split.lengths[rows], split.labels[rows], split.source_rows[rows])


def quantized_noise_stage(params: Mapping[str, Any], dataset: str, model_type: str, bit_width: int, scheme: str, noise_model_name: str, root: Path) -> dict[str, Any]:
    """Accuracy of one calibrated model at every noise level (section 5.5: the same corruption as Figure 9)."""
    settings = QuantNoiseParams.from_params(params)
    noise = NoiseParams.from_params(params)
    check_scheme(scheme)
    noise_model(noise_model_name, "noise_model")
    paths = ProjectPaths(root)
    config, _ = load_float_model(paths, dataset, model_type)
    qmodel = load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, QuantSpec.from_params(params, bit_width))
    scorer = quant_scorer(qmodel)
    batch_size = get_typed(section(params, "evaluate"), "batch_size", int, "evaluate")
    noisy_dir = paths.noisy(dataset, noise_model_name)

    metrics: dict[str, Any] = {}
    started = time.perf_counter()
    for level in noise.levels:
        split = load_noisy_split(noisy_dir, level)
        check_vocabulary_fits(config, split, str(noisy_dir / f"{level_name(level)}.npz"))
        split = _subset(split, evenly_spaced(len(split), settings.test_documents))
        result = evaluate(score_split(scorer, split, batch_size), split.labels)
        metrics[f"accuracy@{level_name(level)}"] = round(result.accuracy, 6)
    metrics.update(
        {
            "dataset": dataset,
            "model_type": model_type,
            "bit_width": bit_width,
            "calibration_scheme": scheme,
            "noise_model": noise_model_name,
            "documents": int(len(split)),
            "evaluate_seconds": round(time.perf_counter() - started, 2),
        }
    )
    write_json(paths.quantized_noise_metrics(dataset, model_type, bit_width, scheme, noise_model_name), metrics)
    return metrics


NOISE_GRID_COLUMNS = ["dataset", "model_type", "precision", "calibration_scheme", "noise_model", "noise_level", "accuracy", "documents"]


def collect_noise_grid(
    root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], levels: Sequence[float], settings: QuantNoiseParams
) -> list[dict[str, Any]]:
    """Long table: float curves (``precision`` = float, on the whole test split) and quantized ones (``w<b>``)."""
    paths = ProjectPaths(root)
    rows: list[dict[str, Any]] = []
    for dataset in datasets:
        for model_type in model_types:
            for name in settings.noise_models:
                float_metrics = read_json(paths.float_noise_metrics(dataset, model_type, name))
                cells = [("float", "", float_metrics)]
                for scheme in settings.schemes:
                    cells += [(f"w{b}", scheme, read_json(paths.quantized_noise_metrics(dataset, model_type, b, scheme, name))) for b in bit_widths]
                for precision, scheme, metrics in cells:
                    for level in levels:
                        rows.append(
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
    return rows


def _curve_table(rows: list[dict[str, Any]], levels: Sequence[float], columns: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Wide table for ``dvc plots``: one row per noise level, one column per line."""
    table = []
    for level in levels:
        entry: dict[str, Any] = {"noise_level": level}
        for column, match in columns.items():
            hits = [r["accuracy"] for r in rows if r["noise_level"] == level and all(r[k] == v for k, v in match.items())]
            entry[column] = hits[0] if hits else None
        table.append(entry)
    return table


def write_noise_figures(
    rows: list[dict[str, Any]], out_dir: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], levels: Sequence[float], settings: QuantNoiseParams
) -> list[Path]:
    """Figure 9 (float, per noise model) and Figure 10 (per scheme and noise model): CSV series and PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    for name in settings.noise_models:
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
        for axis, dataset in zip(axes[0], datasets):
            table = _curve_table(rows, levels, {m: {"dataset": dataset, "model_type": m, "precision": "float", "noise_model": name} for m in model_types})
            path = out_dir / f"figure9_{dataset}_{name}.csv"
            write_csv(path, table, list(table[0]))
            written.append(path)
            for model_type in model_types:
                axis.plot(levels, [100 * r[model_type] for r in table], marker="o", label=model_type)
            axis.set(title=dataset, xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
            axis.grid(alpha=0.3)
            axis.legend()
        fig.suptitle(f"Figure 9: float accuracy vs noise level ({name})", fontsize=10)
        fig.tight_layout()
        written.append(out_dir / f"figure9_{name}.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

        for scheme in settings.schemes:
            fig, axes = plt.subplots(len(model_types), len(datasets), figsize=(5.5 * len(datasets), 4 * len(model_types)), squeeze=False)
            for j, dataset in enumerate(datasets):
                for i, model_type in enumerate(model_types):
                    base = {"dataset": dataset, "model_type": model_type, "noise_model": name}
                    columns = {f"w{b}": {**base, "precision": f"w{b}", "calibration_scheme": scheme} for b in sorted(bit_widths, reverse=True)}
                    columns["float"] = {**base, "precision": "float"}
                    table = _curve_table(rows, levels, columns)
                    path = out_dir / f"figure10_{dataset}_{model_type}_{scheme}_{name}.csv"
                    write_csv(path, table, list(table[0]))
                    written.append(path)
                    axis = axes[i][j]
                    for column in columns:
                        style = {"linestyle": ":", "color": "black"} if column == "float" else {"marker": "o"}
                        axis.plot(levels, [100 * r[column] for r in table], label=column, **style)
                    documents = {r["documents"] for r in rows if r["precision"] != "float" and all(r[k] == v for k, v in base.items())}
                    axis.set(title=f"{dataset}, {model_type} ({'/'.join(map(str, sorted(documents)))} test docs)", xlabel="noise level (epsilon)", ylabel="test accuracy (%)")
                    axis.grid(alpha=0.3)
                    axis.legend(fontsize=7)
            fig.suptitle(f"Figure 10: quantized accuracy vs noise level\n{scheme} calibration, {name} (dotted: float, whole test split)", fontsize=10)
            fig.tight_layout()
            written.append(out_dir / f"figure10_{scheme}_{name}.png")
            fig.savefig(written[-1], dpi=120)
            plt.close(fig)
    return written


def noise_report_stage(params: Mapping[str, Any], root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int]) -> list[dict[str, Any]]:
    settings = QuantNoiseParams.from_params(params)
    levels = NoiseParams.from_params(params).levels
    rows = collect_noise_grid(root, datasets, model_types, bit_widths, levels, settings)
    write_csv(root / "metrics" / "noise_grid.csv", rows, NOISE_GRID_COLUMNS)
    write_noise_figures(rows, root / "plots" / "noise" / "figures", datasets, model_types, bit_widths, levels, settings)
    return rows


FIGURE16_COLUMNS = ["bit_width", "clean_trained", "noise_trained"]


def figure16_stage(params: Mapping[str, Any], root: Path, bit_widths: Sequence[int]) -> dict[str, list[dict[str, Any]]]:
    """Accuracy at ``eval_level`` noise of the clean-trained and the noise-trained generative model,
    class-conditionally calibrated, per bit width (rows ``float`` included): CSV per dataset and one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = NoiseTrainingParams.from_params(params)
    key = f"accuracy@{level_name(settings.eval_level)}"
    trees = {"clean_trained": ProjectPaths(root), "noise_trained": ProjectPaths(root / VARIANT_ROOT)}
    out_dir = root / "plots" / "noise" / "figure16"
    tables: dict[str, list[dict[str, Any]]] = {}
    fig, axes = plt.subplots(1, max(len(settings.datasets), 1), figsize=(5.5 * max(len(settings.datasets), 1), 4), squeeze=False)
    for axis, dataset in zip(axes[0], settings.datasets):
        table = []
        for bit_width in sorted(bit_widths, reverse=True):
            table.append({"bit_width": bit_width, **{name: read_json(paths.quantized_noise_metrics(dataset, MODEL_TYPE, bit_width, SCHEME, settings.noise_model))[key] for name, paths in trees.items()}})
        floats = {name: read_json(paths.float_noise_metrics(dataset, MODEL_TYPE, settings.noise_model))[key] for name, paths in trees.items()}
        write_csv(out_dir / f"figure16_{dataset}.csv", table, FIGURE16_COLUMNS)
        tables[dataset] = table + [{"bit_width": "float", **floats}]
        for name in trees:
            line = axis.plot([r["bit_width"] for r in table], [100 * r[name] for r in table], marker="o", label=name.replace("_", " "))[0]
            axis.axhline(100 * floats[name], linestyle=":", linewidth=1, color=line.get_color())
        axis.set(title=dataset, xlabel="bit width", ylabel=f"test accuracy (%) at noise {settings.eval_level:g}")
        axis.invert_xaxis()
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"Figure 16: generative model trained with noise {settings.level:g} vs clean\n{SCHEME} calibration (dotted: float)", fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / "figure16.png", dpi=120)
    plt.close(fig)
    write_json(root / "metrics" / "figure16.json", {dataset: {str(r["bit_width"]): {k: r[k] for k in trees} for r in rows} for dataset, rows in tables.items()})
    return tables
