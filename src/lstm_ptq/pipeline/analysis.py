"""Analysis stages that run models (paper section 6): ``ks_analysis`` (Figures 12-14) and ``token_losses``
(Figure 15); ``per_class`` and ``analysis_report`` (:mod:`.analysis_report`) read tables and scores only.

They read the models and test scores the grid already produced and recompute none of them. Every KS value
is a :func:`lstm_ptq.stats.ks_two_sample` row with its p-value and both sample sizes (before and after the
seeded subsampling to ``analysis.ks_sample_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import write_frame, write_json
from ..datasets import dataset_spec
from ..models import check_vocabulary_fits, load_float_model
from ..noise import level_name, load_noisy_split
from ..paths import ProjectPaths
from ..preprocess import EncodedSplit, evenly_spaced, load_split
from ..quantization import load_quantized, token_batches
from ..settings import AnalysisSettings, NoiseTrainingSettings, QuantizationSettings
from ..shifts import final_layer_inputs, final_layer_outputs, final_layer_weights, layer_activations, sample_pairs, token_losses, weights_only
from ..stats import bootstrap_mean, kde_curve, ks_difference, ks_two_sample
from . import log
from .analysis_report import GAP_COLUMNS, ks_gaps_table
from .ptq import scheme_rows

KS_COLUMNS = ["dataset", "model_type", "figure", "layer", "bit_width", "scheme", "against", "ks_statistic", "p_value", "n_a", "n_b", "n_a_total", "n_b_total"]


def _ks_row(
    dataset: str, model_type: str, figure: int, layer: str, bit_width: int, scheme: str, against: str, a: Any, b: Any, size: int, seed: int
) -> dict[str, Any]:
    result = ks_two_sample(a, b, max_samples=size, seed=seed)
    return {
        "dataset": dataset,
        "model_type": model_type,
        "figure": figure,
        "layer": layer,
        "bit_width": bit_width,
        "scheme": scheme,
        "against": against,
        "ks_statistic": round(result.ks_statistic, 6),
        "p_value": float(f"{result.p_value:.6g}"),
        "n_a": result.n_a,
        "n_b": result.n_b,
        "n_a_total": result.n_a_total,
        "n_b_total": result.n_b_total,
    }


# The KS gaps the findings report judges (which calibration set moves a layer more) come with a bootstrap
# interval: on this many aligned elements, with this many resamples (each resample runs two KS tests).
GAP_SAMPLE_SIZE = 20_000
GAP_RESAMPLES = 200
SHIFT_RESAMPLES = 2000  # document-level bootstrap of the token-loss shifts (Figure 15)


def _gap_row(
    dataset: str, model_type: str, figure: int, bit_width: int, first: str, second: str, a: tuple, b: tuple, paired: bool, seed: int
) -> dict[str, Any]:
    test = ks_difference(a, b, paired=paired, max_samples=GAP_SAMPLE_SIZE, n_resamples=GAP_RESAMPLES, confidence=0.95, seed=seed)
    return {
        "dataset": dataset,
        "model_type": model_type,
        "figure": figure,
        "bit_width": bit_width,
        "first": first,
        "second": second,
        "first_ks": round(test.first_statistic, 6),
        "second_ks": round(test.second_statistic, 6),
        "difference": round(test.estimate.mean, 6),
        "low": round(test.estimate.low, 6),
        "high": round(test.estimate.high, 6),
        "p_value": float(f"{test.p_value:.6g}"),
        "n": test.estimate.n,
        "resamples": test.resamples,
    }


def common_documents(test: EncodedSplit, documents: int | None) -> np.ndarray:
    """The common input set: ``analysis.documents`` evenly spaced test documents (the same for every model)."""
    return evenly_spaced(len(test), documents)


def _feed(model_type: str, split: EncodedSplit) -> np.ndarray | None:
    """The generative decoder is fed each document's own label on the common input set; the discriminative
    model has no label input."""
    return split.labels if model_type == "generative" else None


def _calibration_subset(paths: ProjectPaths, dataset: str, model_type: str, scheme: str, train: EncodedSplit, documents: int | None, batch_size: int) -> list:
    """Label-free batches of ``documents`` evenly spaced rows of the scheme's calibration set (its class mix kept)."""
    rows = scheme_rows(paths, dataset, model_type, scheme, len(train))
    return token_batches(train, batch_size, rows[evenly_spaced(len(rows), documents)])


def ks_analysis_stage(
    dataset: str,
    model_type: str,
    bit_widths: Sequence[int],
    analysis: AnalysisSettings,
    quantization: QuantizationSettings,
    batch_size: int,
    seed: int,
    root: Path,
) -> pd.DataFrame:
    """Figures 12-14 for one model: metrics/analysis/<dataset>/<model_type>/ks.csv, and ks_gaps.csv beside it:
    per bit width, each other scheme's KS against that of ``analysis.schemes[0]`` (Figures 12, 14) and the
    embedding's KS between calibration sets against the LSTM's (Figure 13), with bootstrap intervals.

    - Figure 12: final-layer weights after calibration and GPFQ vs the float weights, per bit width and
      scheme; ``scheme`` ``none`` is the quantized model before calibration (round to nearest), for scale.
    - Figure 13: embedding and LSTM outputs of the weight-quantized model before activation calibration,
      fed the calibration set of each scheme of the grid vs that of ``analysis.schemes[0]`` (evenly spaced
      ``analysis.documents`` of each set), per bit width; its gaps (ks_gaps.csv) for ``analysis.schemes``.
    - Figure 14: final-layer outputs of each calibrated model vs the float model on the common input set;
      the generative decoder's outputs are read at ``ks_sample_size`` seeded (position, word) pairs, the
      same pairs for every model.
    """
    paths = ProjectPaths(root)
    size = analysis.ks_sample_size
    config, float_model = load_float_model(paths, dataset, model_type)
    tokenized = paths.tokenized(dataset)
    num_classes = dataset_spec(dataset).num_classes
    train, test = load_split(tokenized, "train", num_classes), load_split(tokenized, "test", num_classes)
    check_vocabulary_fits(config, test, str(tokenized / "test.npz"))
    common = common_documents(test, analysis.documents)
    test_batches = token_batches(test, batch_size, common, _feed(model_type, test))
    float_weights = final_layer_weights(float_model).reshape(-1).cpu().numpy()
    float_rows = final_layer_inputs(float_model, test_batches)
    pairs = sample_pairs(float_rows.shape[0], config.num_classes if model_type == "discriminative" else config.vocab_size, size, seed)
    float_outputs = final_layer_outputs(float_model, float_rows, pairs)
    reference = analysis.schemes[0]
    calibration_batches = {
        scheme: _calibration_subset(paths, dataset, model_type, scheme, train, analysis.documents, batch_size)
        for scheme in (reference, *analysis.figure13_schemes)
    }
    records, gaps = [], []
    for bit_width in bit_widths:
        spec = quantization.spec(bit_width)
        before = load_quantized(paths.quantized(dataset, model_type, bit_width), config, spec, calibrated=False)
        records.append(
            _ks_row(
                dataset,
                model_type,
                12,
                "final_layer_weights",
                bit_width,
                "none",
                "float",
                final_layer_weights(before).reshape(-1).cpu().numpy(),
                float_weights,
                size,
                seed,
            )
        )
        with weights_only(before):
            activations = {scheme: layer_activations(before, batches) for scheme, batches in calibration_batches.items()}
        for scheme in analysis.figure13_schemes:
            for layer in ("embedding", "lstm"):
                records.append(
                    _ks_row(dataset, model_type, 13, layer, bit_width, scheme, reference, activations[scheme][layer], activations[reference][layer], size, seed)
                )
        weights, outputs = {}, {}
        for scheme in analysis.schemes:
            calibrated = load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, spec)
            weights[scheme] = final_layer_weights(calibrated).reshape(-1).cpu().numpy()
            records.append(_ks_row(dataset, model_type, 12, "final_layer_weights", bit_width, scheme, "float", weights[scheme], float_weights, size, seed))
            outputs[scheme] = final_layer_outputs(calibrated, final_layer_inputs(calibrated, test_batches), pairs)
            records.append(_ks_row(dataset, model_type, 14, "final_layer_outputs", bit_width, scheme, "float", outputs[scheme], float_outputs, size, seed))
        for scheme in analysis.schemes[1:]:
            against = f"{scheme} vs {reference}"
            gaps.append(
                _gap_row(
                    dataset,
                    model_type,
                    12,
                    bit_width,
                    f"{scheme} vs float",
                    f"{reference} vs float",
                    (weights[scheme], float_weights),
                    (weights[reference], float_weights),
                    True,
                    seed,
                )
            )
            gaps.append(
                _gap_row(
                    dataset,
                    model_type,
                    13,
                    bit_width,
                    f"embedding: {against}",
                    f"lstm: {against}",
                    (activations[scheme]["embedding"], activations[reference]["embedding"]),
                    (activations[scheme]["lstm"], activations[reference]["lstm"]),
                    False,
                    seed,
                )
            )
            gaps.append(
                _gap_row(
                    dataset,
                    model_type,
                    14,
                    bit_width,
                    f"{reference} vs float",
                    f"{scheme} vs float",
                    (outputs[reference], float_outputs),
                    (outputs[scheme], float_outputs),
                    True,
                    seed,
                )
            )
        log("ks_analysis", f"{dataset} {model_type} w{bit_width} done")
    table = pd.DataFrame(records, columns=KS_COLUMNS, dtype=object)
    write_frame(paths.ks_table(dataset, model_type), table)
    write_frame(ks_gaps_table(paths, dataset, model_type), pd.DataFrame(gaps, columns=list(GAP_COLUMNS), dtype=object))
    return table


def _shift_test(values: np.ndarray, groups: np.ndarray, seed: int) -> dict[str, Any]:
    test = bootstrap_mean(values, groups=groups, n_resamples=SHIFT_RESAMPLES, confidence=0.95, seed=seed)
    return {
        "mean": round(test.estimate.mean, 6),
        "low": round(test.estimate.low, 6),
        "high": round(test.estimate.high, 6),
        "p_value": float(f"{test.p_value:.6g}"),
        "documents": test.estimate.n,
        "resamples": test.resamples,
    }


def _document_means(losses: np.ndarray, documents: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Each document's mean token loss, in ``rows`` order."""
    size = int(rows.max()) + 1
    return (np.bincount(documents, weights=losses, minlength=size) / np.maximum(np.bincount(documents, minlength=size), 1))[rows]


def token_losses_stage(
    dataset: str,
    bit_widths: Sequence[int],
    analysis: AnalysisSettings,
    quantization: QuantizationSettings,
    noise: NoiseTrainingSettings,
    batch_size: int,
    seed: int,
    root: Path,
) -> dict[str, Any]:
    """Figure 15 for the generative model on the common input set: densities of the token-level losses of the
    float model, of each ``analysis.schemes`` model at ``analysis.kde_bit_width``, and of the first scheme's
    model on the Figure 16 noisy input (``noise_training.noise_model`` at ``eval_level``), and of each model's
    per-token loss difference against the float model on the same input tokens. Writes the curves
    (token_loss_kde.csv) and token_losses.json: per condition the loss statistics, the largest difference and
    a KS test against the float model's clean losses; and the shifts the paper reads off the figure as mean
    differences with document-level (cluster) bootstrap intervals."""
    paths = ProjectPaths(root)
    model_type = "generative"
    bit_width = analysis.kde_bit_width
    if bit_width not in bit_widths:
        raise ValueError(f"analysis.kde_bit_width {bit_width} is not in grid.bit_widths {list(bit_widths)}")
    config, float_model = load_float_model(paths, dataset, model_type)
    tokenized = paths.tokenized(dataset)
    test = load_split(tokenized, "test", dataset_spec(dataset).num_classes)
    noisy_dir = paths.noisy(dataset, noise.noise_model)
    noisy = load_noisy_split(noisy_dir, noise.eval_level, dataset_spec(dataset).num_classes)
    for name, split in ((str(tokenized / "test.npz"), test), (str(noisy_dir / f"{level_name(noise.eval_level)}.npz"), noisy)):
        check_vocabulary_fits(config, split, name)
    rows = common_documents(test, analysis.documents)
    spec = quantization.spec(bit_width)
    models = {scheme: load_quantized(paths.calibrated(dataset, model_type, bit_width, scheme), config, spec) for scheme in analysis.schemes}
    float_clean, documents = token_losses(float_model, test, rows, batch_size)
    float_noisy, noisy_documents = token_losses(float_model, noisy, rows, batch_size)
    reference = analysis.schemes[0]
    noisy_name = f"{reference}, {noise.noise_model} {noise.eval_level:g}"
    # condition: (its token losses, the float model's on the same input tokens)
    conditions: dict[str, tuple[np.ndarray, np.ndarray]] = {"float": (float_clean, float_clean)}
    for scheme, model in models.items():
        conditions[scheme] = (token_losses(model, test, rows, batch_size)[0], float_clean)
    conditions[noisy_name] = (token_losses(models[reference], noisy, rows, batch_size)[0], float_noisy)

    curves, summary = [], {}
    for name, (losses, float_losses) in conditions.items():
        difference = losses - float_losses
        for kind, values in (("loss", losses), ("difference", difference)):
            if kind == "difference" and name == "float":
                continue
            grid, density = kde_curve(values, analysis.kde_points, max_samples=analysis.ks_sample_size, seed=seed)
            curves += [{"condition": name, "kind": kind, "x": round(float(x), 6), "density": round(float(d), 8)} for x, d in zip(grid, density)]
        ks = ks_two_sample(losses, float_clean, max_samples=analysis.ks_sample_size, seed=seed)
        summary[name] = {
            "tokens": int(losses.size),
            "mean_loss": round(float(losses.mean()), 6),
            "median_loss": round(float(np.median(losses)), 6),
            "p90_loss": round(float(np.quantile(losses, 0.9)), 6),
            "mean_difference": round(float(difference.mean()), 6),
            "max_difference": round(float(difference.max()), 6),
            "ks_vs_float_clean": {"statistic": round(ks.ks_statistic, 6), "p_value": float(f"{ks.p_value:.6g}"), "n_a": ks.n_a, "n_b": ks.n_b},
        }
    # the shifts of section 6.1.3, each a mean token-loss difference with documents resampled whole
    shifts = {}
    for scheme in analysis.schemes:
        shifts[f"{scheme} - float"] = _shift_test(conditions[scheme][0] - float_clean, documents, seed)
    for scheme in analysis.schemes[1:]:
        shifts[f"{scheme} - {reference}"] = _shift_test(conditions[scheme][0] - conditions[reference][0], documents, seed)
    # noisy vs clean input to the same model: the tokens differ, so compare each document's mean token loss
    clean_means = _document_means(conditions[reference][0], documents, rows)
    noisy_means = _document_means(conditions[noisy_name][0], noisy_documents, rows)
    shifts[f"{noisy_name} - {reference} (document means)"] = _shift_test(noisy_means - clean_means, rows, seed)
    result = {
        "dataset": dataset,
        "bit_width": bit_width,
        "documents": int(len(rows)),
        "noise_model": noise.noise_model,
        "noise_level": noise.eval_level,
        "difference_against": "the float model's loss on the same input tokens (clean for clean conditions, noisy for the noisy one)",
        "conditions": summary,
        "shifts": shifts,
    }
    write_frame(paths.token_loss_densities(dataset), pd.DataFrame(curves, columns=["condition", "kind", "x", "density"], dtype=object))
    write_json(paths.token_loss_summary(dataset), result)
    return result
