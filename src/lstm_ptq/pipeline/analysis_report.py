"""Analysis stages that read tables and saved scores only (no model runs, no Brevitas import): ``per_class``
(per-class accuracy drops and score variances of every calibrated cell) and ``analysis_report`` (Figures
12-15, the per-class figure and its per-cell table under plots/analysis)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..analysis_plots import write_figure15, write_ks_figures, write_per_class_figure
from ..artifacts import read_frame, read_json, readable_path, write_frame
from ..datasets import dataset_spec
from ..errors import DataError
from ..evaluation import load_test_scores
from ..paths import ProjectPaths
from ..per_class import per_class_effects, per_class_summary
from ..preprocess import load_split
from ..settings import check_bit_width, check_dataset, check_model_type, check_noise_model, check_scheme, get_typed, section

_AXIS_CHECKS = {
    "datasets": check_dataset,
    "model_types": check_model_type,
    "bit_widths": check_bit_width,
    "calibration_schemes": check_scheme,
    "noise_quantized_schemes": check_scheme,
    "noise_quantized_noise_models": check_noise_model,
    "noise_trained_datasets": check_dataset,
}


def grid_axis(params: Mapping[str, Any], key: str) -> tuple[Any, ...]:
    """One axis of the ``grid`` section, checked, read alone so that a stage needing one axis does not
    depend on the others."""
    values = get_typed(section(params, "grid"), key, list, "grid")
    return tuple(_AXIS_CHECKS[key](v, f"grid.{key}[{i}]") for i, v in enumerate(values))


# ks_gaps.csv's columns, written by ks_analysis and required by the findings report; first_ks, second_ks: the
# two KS statistics on the gap's own samples (n values each), whose difference it is
GAP_COLUMNS = (
    "dataset", "model_type", "figure", "bit_width", "first", "second", "first_ks", "second_ks", "difference", "low", "high", "p_value", "n", "resamples"
)  # fmt: skip


def ks_gaps_table(paths: ProjectPaths, dataset: str, model_type: str) -> Path:
    """KS(first) - KS(second) per figure and bit width, with its bootstrap interval (beside ks.csv)."""
    return paths.ks_table(dataset, model_type).with_name("ks_gaps.csv")


PER_CLASS_COLUMNS = [
    "dataset",
    "model_type",
    "bit_width",
    "scheme",
    "class",
    "documents",
    "float_accuracy",
    "accuracy",
    "accuracy_drop",
    "float_score_variance",
    "score_variance",
]


def per_class_stage(dataset: str, model_type: str, bit_widths: Sequence[int], schemes: Sequence[str], root: Path) -> pd.DataFrame:
    """Per-class accuracy drop against the float model and the mean per-document variance of the class
    scores (logits of the discriminative model, per-label document losses of the generative one), float vs
    quantized, for every calibrated cell: metrics/analysis/<dataset>/<model_type>/per_class.csv."""
    paths = ProjectPaths(root)
    tokenized = paths.tokenized(dataset)
    classes = read_json(tokenized / "classes.json")
    labels = load_split(tokenized, "test", dataset_spec(dataset).num_classes).labels
    shape = (len(labels), len(classes))
    float_run = load_test_scores(paths.float_test_scores(dataset, model_type), *shape)
    records = []
    for bit_width in bit_widths:
        for scheme in schemes:
            run = load_test_scores(paths.calibrated_test_scores(dataset, model_type, bit_width, scheme), *shape)
            for row in per_class_effects(labels, float_run, run):
                index = row.pop("class_index")
                records.append(
                    {"dataset": dataset, "model_type": model_type, "bit_width": bit_width, "scheme": scheme, "class": classes[index]}
                    | {k: (v if k == "documents" else round(v, 6)) for k, v in row.items()}
                )
    table = pd.DataFrame(records, columns=PER_CLASS_COLUMNS, dtype=object)
    write_frame(paths.per_class_table(dataset, model_type), table)
    return table


def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not readable_path(path).is_file():
        raise DataError(f"{path}: missing; run the {what} stage first (dvc repro)")
    return read_frame(path)


def analysis_report_stage(
    root: Path, datasets: Sequence[str], model_types: Sequence[str], bit_widths: Sequence[int], schemes: Sequence[str], kde_points: int
) -> list[Path]:
    """Figures 12-15 and the per-class figure (PNG and CSV series) under plots/analysis, and one row per
    calibrated cell of per-class effects in plots/analysis/per_class_summary.csv."""
    paths = ProjectPaths(root)
    out_dir = paths.analysis_plots()
    panels = [(d, m) for d in datasets for m in model_types]
    ks = pd.concat([_read_table(paths.ks_table(d, m), f"ks_analysis@{d}-{m}") for d, m in panels], ignore_index=True)
    per_class = pd.concat([_read_table(paths.per_class_table(d, m), f"per_class@{d}-{m}") for d, m in panels], ignore_index=True)
    summary = per_class_summary(per_class)
    write_frame(out_dir / "per_class_summary.csv", summary)
    written = write_ks_figures(ks, out_dir, panels, bit_widths)
    if "generative" in model_types:
        curves = {d: _read_table(paths.token_loss_densities(d), f"token_losses@{d}") for d in datasets}
        summaries = {d: read_json(paths.token_loss_summary(d)) for d in datasets}
        written += write_figure15(curves, summaries, out_dir, kde_points)
    written += write_per_class_figure(summary, out_dir, panels, bit_widths, schemes)
    return written
