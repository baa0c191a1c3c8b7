"""Stage ``findings``: reports/findings.md and reports/findings.csv, every claim of the paper judged on this
pipeline's outputs (:mod:`lstm_ptq.findings` says how). Nothing in the report is typed by hand: the claims'
wording is the catalogue below, every number and verdict is computed here from the stage outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..artifacts import atomic_write_text, read_frame, read_json, write_frame
from ..datasets import dataset_spec
from ..evaluation import load_test_scores
from ..findings import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    LOW_BIT_WIDTHS,
    MODERATE_DROP,
    OVERALL_RULE,
    SMALL_DROP,
    Judgement,
    accuracy_difference,
    drop_below,
    drop_difference,
    interval_ordering,
    overall,
    paired_difference,
    precomputed,
)
from ..paths import ProjectPaths
from ..preprocess import load_split
from ..robustness import NoisePredictions, load_noise_predictions
from ..stats import VERDICT_RULE, Interval, mean_interval
from .analysis_report import GAP_COLUMNS, ks_gaps_table
from .trees import TreeRun

CC, UC, ONE_CLASS = "class_conditional", "class_unconditional", "classes_1"


@dataclass
class Context:
    """What one dataset's judgements read: per-document correctness of any model, the analysis tables."""

    paths: ProjectPaths
    dataset: str
    bit_widths: tuple[int, ...]
    schemes: tuple[str, ...]
    seed: int
    model_types: tuple[str, ...] = ("discriminative", "generative")
    noise: NoiseGrid | None = None  # the noise cells run (None: a tree, which runs none the claims read)
    labels: np.ndarray = field(init=False)
    classes: list[str] = field(init=False)
    _cache: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = load_split(self.paths.tokenized(self.dataset), "test", dataset_spec(self.dataset).num_classes).labels
        self.classes = read_json(self.paths.tokenized(self.dataset) / "classes.json")

    def correct(self, model_type: str, bit_width: int | None = None, scheme: str | None = None) -> np.ndarray:
        """Per-document correctness on the test split: the float model, or a calibrated cell."""
        key = (model_type, str(bit_width), str(scheme))
        if key not in self._cache:
            if bit_width is None:
                path = self.paths.float_test_scores(self.dataset, model_type)
            else:
                path = self.paths.calibrated_test_scores(self.dataset, model_type, bit_width, scheme)
            self._cache[key] = load_test_scores(path, len(self.labels), len(self.classes))["predictions"] == self.labels
        return self._cache[key]

    def has(self, *schemes: str) -> bool:
        return all(s in self.schemes for s in schemes)

    def noisy(self, model_type: str, bit_width: int | None = None, scheme: str | None = None, *, variant: bool = False) -> NoisePredictions:
        """Predictions at every noise level of ``noise.noise_model``: the float model or a calibrated cell, of
        the main tree or the noise-trained variant (section 7)."""
        assert self.noise is not None
        paths = self.paths.noise_trained() if variant else self.paths
        if bit_width is None:
            path = paths.float_noise_predictions(self.dataset, model_type, self.noise.noise_model)
        else:
            path = paths.quantized_noise_predictions(self.dataset, model_type, bit_width, scheme, self.noise.noise_model)
        return load_noise_predictions(path, len(self.labels), len(self.classes))

    def low_bits(self) -> list[int]:
        return [b for b in self.bit_widths if b in LOW_BIT_WIDTHS]

    def ks_gaps(self, model_type: str) -> pd.DataFrame:
        return read_frame(ks_gaps_table(self.paths, self.dataset, model_type), GAP_COLUMNS)

    def token_losses(self) -> dict[str, Any]:
        return read_json(self.paths.token_loss_summary(self.dataset))


@dataclass(frozen=True)
class NoiseGrid:
    """The noise cells the noise claims read: ``noise_model`` (noise_training.noise_model, the paper's
    substitution noise) at ``levels``, quantized cells for ``schemes`` when that noise model is in
    grid.noise_quantized_noise_models, and the noise-trained variant's test level ``eval_level``."""

    noise_model: str
    levels: tuple[float, ...]
    quantized: bool
    schemes: tuple[str, ...]
    eval_level: float
    variant_datasets: tuple[str, ...]


@dataclass
class SeedPool(Context):
    """One dataset under several training seeds (the main tree and the seed trees): per-document correctness
    averaged over the seeds, so each comparison stays paired on the same test documents and is combined
    across seeds by one document bootstrap."""

    members: tuple[Context, ...] = ()

    def correct(self, model_type: str, bit_width: int | None = None, scheme: str | None = None) -> np.ndarray:
        return np.mean([m.correct(model_type, bit_width, scheme) for m in self.members], axis=0)


def _pct(x: np.ndarray) -> str:
    return f"{100 * float(np.mean(x)):.2f}%"


@dataclass(frozen=True)
class Claim:
    key: str
    section: str
    text: str  # the paper's claim, paraphrased with its section
    reading: str  # how this report turns it into comparisons
    judge: Callable[[Context], list[Judgement]] | None  # None: not judged yet (``missing`` says why)
    figures: tuple[str, ...] = ()
    several: bool = False  # judged by OVERALL_RULE's "several bit widths" form
    needs: str = ""  # what the claim needs that the grid may not have (shown when it yields no judgement)
    schemes: tuple[str, ...] = ()  # calibration schemes its comparisons read
    predictions_only: bool = False  # reads only test predictions: judged in every tree and pooled over seeds
    model_types: tuple[str, ...] = ("discriminative", "generative")  # the models its comparisons read


def _c1(ctx: Context) -> list[Judgement]:
    d, g = ctx.correct("discriminative"), ctx.correct("generative")
    return [accuracy_difference("C1", ctx.dataset, "float", f"acc(discriminative) - acc(generative) ({_pct(d)} vs {_pct(g)})", d, g, ctx.seed)]


def _c2(ctx: Context) -> list[Judgement]:
    out = []
    for b in ctx.low_bits():
        gen = (ctx.correct("generative"), ctx.correct("generative", b, UC))
        dis = (ctx.correct("discriminative"), ctx.correct("discriminative", b, UC))
        quantity = f"drop(generative) - drop(discriminative), class-unconditional ({_pct(gen[0])} -> {_pct(gen[1])} vs {_pct(dis[0])} -> {_pct(dis[1])})"
        out.append(drop_difference("C2", ctx.dataset, f"{b}-bit", quantity, gen, dis, ctx.seed))
    return out


def _c3(ctx: Context) -> list[Judgement]:
    out = []
    for b in ctx.bit_widths:
        margin = SMALL_DROP if b >= 4 else MODERATE_DROP
        before, after = ctx.correct("generative"), ctx.correct("generative", b, CC)
        quantity = f"{100 * margin:g}-point margin - drop(generative, class-conditional) ({_pct(before)} -> {_pct(after)})"
        out.append(drop_below("C3", ctx.dataset, f"{b}-bit", quantity, before, after, margin, ctx.seed))
    return out


def _c4(ctx: Context) -> list[Judgement]:
    out = []
    for b in ctx.low_bits():
        cc, uc = ctx.correct("generative", b, CC), ctx.correct("generative", b, UC)
        out.append(
            accuracy_difference("C4", ctx.dataset, f"{b}-bit", f"acc(generative, CC) - acc(generative, UC) ({_pct(cc)} vs {_pct(uc)})", cc, uc, ctx.seed)
        )
    return out


def _c5(ctx: Context) -> list[Judgement]:
    out = []
    for b in ctx.bit_widths:
        g, d = ctx.correct("generative", b, CC), ctx.correct("discriminative", b, CC)
        out.append(accuracy_difference("C5", ctx.dataset, f"{b}-bit", f"acc(generative) - acc(discriminative), CC ({_pct(g)} vs {_pct(d)})", g, d, ctx.seed))
    return out


def _c6(ctx: Context) -> list[Judgement]:
    out = []
    for b in ctx.low_bits():
        gen = (ctx.correct("generative", b, CC), ctx.correct("generative", b, ONE_CLASS))
        dis = (ctx.correct("discriminative", b, CC), ctx.correct("discriminative", b, ONE_CLASS))
        quantity = f"loss CC -> one class: generative ({_pct(gen[0])} -> {_pct(gen[1])}) - discriminative ({_pct(dis[0])} -> {_pct(dis[1])})"
        out.append(drop_difference("C6", ctx.dataset, f"{b}-bit", quantity, gen, dis, ctx.seed))
    return out


def _gap(ctx: Context, model_type: str, figure: int, first: str, second: str) -> dict[int, dict[str, Any]]:
    gaps = ctx.ks_gaps(model_type)
    rows = gaps.loc[(gaps["figure"] == figure) & (gaps["first"] == first) & (gaps["second"] == second)]
    return {int(r["bit_width"]): r.to_dict() for _, r in rows.iterrows()}


def _gap_test(row: dict[str, Any]) -> str:
    return f"bootstrap of the KS difference ({int(row['n'])} values per sample, ks_analysis)"


def _c7(ctx: Context) -> list[Judgement]:
    out = []
    for b, row in _gap(ctx, "generative", 12, f"{UC} vs float", f"{CC} vs float").items():
        quantity = f"KS(UC weights, float) - KS(CC weights, float) ({row['first_ks']:.3f} vs {row['second_ks']:.3f})"
        out.append(precomputed("C7", ctx.dataset, f"{b}-bit", quantity, row, _gap_test(row)))
    return out


def _c8(ctx: Context) -> list[Judgement]:
    gaps = _gap(ctx, "generative", 12, f"{UC} vs float", f"{CC} vs float")
    high = [b for b in gaps if b >= 6]
    low = [b for b in gaps if b <= 4]
    if not high or not low:
        return []
    hb, lb = max(high), min(low)

    def interval(row: dict[str, Any]) -> Interval:
        return Interval(float(row["difference"]), float(row["low"]), float(row["high"]), int(row["n"]), 0.95)

    quantity = f"KS gap (UC - CC) at {hb}-bit ({gaps[hb]['difference']:.3f}) - at {lb}-bit ({gaps[lb]['difference']:.3f})"
    return [interval_ordering("C8", ctx.dataset, f"{hb} vs {lb}-bit", quantity, interval(gaps[hb]), interval(gaps[lb]))]


def _c9(ctx: Context) -> list[Judgement]:
    out = []
    against = f"{UC} vs {CC}"
    for b, row in _gap(ctx, "generative", 13, f"embedding: {against}", f"lstm: {against}").items():
        quantity = f"KS(embedding) - KS(LSTM), UC vs CC sets ({row['first_ks']:.3f} vs {row['second_ks']:.3f}; paper ~0.19 vs ~0.03)"
        out.append(precomputed("C9", ctx.dataset, f"{b}-bit", quantity, row, _gap_test(row)))
    return out


def _c10(ctx: Context) -> list[Judgement]:
    out = []
    for b, row in _gap(ctx, "generative", 14, f"{CC} vs float", f"{UC} vs float").items():
        if b not in LOW_BIT_WIDTHS:
            continue
        quantity = f"KS(CC outputs, float) - KS(UC outputs, float) ({row['first_ks']:.3f} vs {row['second_ks']:.3f})"
        out.append(precomputed("C10", ctx.dataset, f"{b}-bit", quantity, row, _gap_test(row)))
    return out


LOSS_TEST = "document bootstrap of the mean token-loss shift (token_losses)"


def _c11(ctx: Context) -> list[Judgement]:
    losses = ctx.token_losses()
    shifts, b = losses["shifts"], losses["bit_width"]
    out = []
    for against in ("float", CC):
        key = f"{UC} - {against}"
        if key in shifts:
            out.append(precomputed("C11", ctx.dataset, f"{b}-bit, vs {against}", f"mean token loss (nats), 3-bit UC - {against}", shifts[key], LOSS_TEST))
    return out


def _c12(ctx: Context) -> list[Judgement]:
    losses = ctx.token_losses()
    key = next((k for k in losses["shifts"] if k.startswith(f"{CC}, ")), None)
    if key is None:
        return []
    setting = f"{losses['bit_width']}-bit, {losses['noise_model']} {losses['noise_level']:g}"
    return [precomputed("C12", ctx.dataset, setting, "mean token loss per document (nats), noisy - clean input, CC model", losses["shifts"][key], LOSS_TEST)]


BEYOND_002, FROM_004 = 0.02, 0.04  # "slower decline beyond 0.02" (5.5), "declines sharply for noise of 0.04 and more" (5.5, 7)


def _noisy_levels(ctx: Context, above: float, *, inclusive: bool) -> list[float]:
    assert ctx.noise is not None
    return [lv for lv in ctx.noise.levels if (lv >= above if inclusive else lv > above)]


def _robustness_loss(predictions: NoisePredictions, labels: np.ndarray, levels: list[float], documents: np.ndarray | None = None) -> np.ndarray:
    """Per document: correct on clean text minus the mean correctness over ``levels``."""
    return predictions.correct(labels, [0.0], documents).astype(float) - predictions.correct(labels, levels, documents)


def _noise_advantage(
    discriminative: NoisePredictions, generative: NoisePredictions, labels: np.ndarray, levels: list[float], documents: np.ndarray | None = None
) -> np.ndarray:
    """Per document: the accuracy the discriminative model loses to noise minus the generative model's."""
    return _robustness_loss(discriminative, labels, levels, documents) - _robustness_loss(generative, labels, levels, documents)


def _c13(ctx: Context) -> list[Judgement]:
    levels = [] if ctx.noise is None or 0.0 not in ctx.noise.levels else _noisy_levels(ctx, BEYOND_002, inclusive=False)
    if not levels:
        return []
    dis, gen = (_robustness_loss(ctx.noisy(m), ctx.labels, levels) for m in ("discriminative", "generative"))
    setting = f"float, {ctx.noise.noise_model} > {BEYOND_002:g}"
    quantity = f"accuracy lost to noise: discriminative ({100 * dis.mean():.2f} pts) - generative ({100 * gen.mean():.2f} pts)"
    return [paired_difference("C13", ctx.dataset, setting, quantity, dis - gen, ctx.seed)]


def _c14(ctx: Context) -> list[Judgement]:
    noise = ctx.noise
    if noise is None or not noise.quantized or CC not in noise.schemes or 0.0 not in noise.levels:
        return []
    levels = _noisy_levels(ctx, FROM_004, inclusive=True)
    bit_widths = [b for b in ctx.bit_widths if b in (4, 3)]
    if not levels or not bit_widths:
        return []
    floats = (ctx.noisy("discriminative"), ctx.noisy("generative"))
    out = []
    for b in bit_widths:
        quantized = (ctx.noisy("discriminative", b, CC), ctx.noisy("generative", b, CC))
        documents = quantized[1].documents
        float_gap = _noise_advantage(*floats, ctx.labels, levels, documents)
        quant_gap = _noise_advantage(*quantized, ctx.labels, levels, documents)
        setting = f"{b}-bit CC, {noise.noise_model} >= {FROM_004:g}"
        quantity = f"generative noise advantage, float ({100 * float_gap.mean():+.2f} pts) - quantized ({100 * quant_gap.mean():+.2f} pts)"
        out.append(paired_difference("C14", ctx.dataset, setting, quantity, float_gap - quant_gap, ctx.seed))
    return out


def _c15(ctx: Context) -> list[Judgement]:
    noise = ctx.noise
    if noise is None or not noise.quantized or CC not in noise.schemes or ctx.dataset not in noise.variant_datasets:
        return []
    out = []
    for b in ctx.low_bits():
        trained = ctx.noisy("generative", b, CC, variant=True)
        clean = ctx.noisy("generative", b, CC)
        documents = trained.documents
        a = trained.correct(ctx.labels, [noise.eval_level], documents)
        c = clean.correct(ctx.labels, [noise.eval_level], documents)
        setting = f"{b}-bit CC, {noise.noise_model} {noise.eval_level:g}"
        quantity = f"acc(noise-trained) - acc(clean-trained) ({_pct(a)} vs {_pct(c)})"
        out.append(accuracy_difference("C15", ctx.dataset, setting, quantity, a, c, ctx.seed))
    return out


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C1",
        "5.2",
        "The full-precision discriminative classifier slightly outperforms the generative one on both datasets (Table 1).",
        "acc(discriminative) - acc(generative) > 0 on the test split.",
        _c1,
        ("../metrics/table1.md",),
        predictions_only=True,
    ),
    Claim(
        "C2",
        "5.3",
        "Under class-unconditional calibration the generative classifier is much more sensitive to bit width: it deteriorates rapidly at 5 bits and lower, while the discriminative one stays largely stable.",
        "At each bit width of 5 and lower: the generative model's accuracy drop from float exceeds the discriminative model's (difference of drops > 0).",
        _c2,
        ("../plots/ptq/figure6.png",),
        predictions_only=True,
        needs=f"{UC} calibration and a bit width of 5 or lower",
        schemes=(UC,),
    ),
    Claim(
        "C3",
        "5.4",
        "With class-conditional calibration the generative classifier stays stable down to 4 bits and degrades only moderately at 3 bits (a drop under 4%).",
        f"Drop from float under {100 * SMALL_DROP:g} point at 4 bits and above (our reading of 'stable') and under {100 * MODERATE_DROP:g} points at 3 bits (the paper's number): margin - drop > 0.",
        _c3,
        ("../plots/ptq/figure7.png", "../plots/ptq/figure8.png"),
        predictions_only=True,
        model_types=("generative",),
        needs=f"{CC} calibration",
        schemes=(CC,),
    ),
    Claim(
        "C4",
        "5.4, 7",
        "Class-conditional calibration substantially improves the quantized generative classifier over class-unconditional calibration (at 3 bits: a drop under 4% vs over 7-8%).",
        "At each bit width of 5 and lower: acc(generative, class-conditional) - acc(generative, class-unconditional) > 0 on the same documents.",
        _c4,
        ("../plots/ptq/figure11.png",),
        predictions_only=True,
        model_types=("generative",),
        needs=f"{CC} and {UC} calibration",
        schemes=(CC, UC),
    ),
    Claim(
        "C5",
        "5.4",
        "With class-conditional calibration the generative classifier outperforms the discriminative one at several bit widths on both datasets.",
        "At each bit width: acc(generative) - acc(discriminative) > 0, both class-conditionally calibrated; the claim holds when at least two bit widths do.",
        _c5,
        ("../plots/ptq/figure7.png",),
        predictions_only=True,
        several=True,
        needs=f"{CC} calibration",
        schemes=(CC,),
    ),
    Claim(
        "C6",
        "6.1",
        "The generative classifier is highly sensitive to class coverage of the calibration set: with fewer classes (worst with one) it degrades far more than the discriminative one, increasingly below 5 bits.",
        "At each bit width of 5 and lower: the accuracy lost going from class-conditional to one-class calibration is larger for the generative model (difference of losses > 0).",
        _c6,
        ("../plots/ptq/figure11.png",),
        predictions_only=True,
        needs=f"{CC} and {ONE_CLASS} calibration and a bit width of 5 or lower",
        schemes=(CC, ONE_CLASS),
    ),
    Claim(
        "C7",
        "6.1.1",
        "The generative model's final-layer weights move further from the float weights (KS) under class-unconditional than under class-conditional calibration, at every bit width.",
        "At each bit width: KS(UC weights vs float) - KS(CC weights vs float) > 0.",
        _c7,
        ("../plots/analysis/figure12.png",),
        needs=f"analysis.schemes [{CC}, {UC}]",
    ),
    Claim(
        "C8",
        "6.1.1",
        "That KS gap narrows at low bit widths (3-4 bits) compared with 6 bits and above.",
        "The UC - CC weight-KS gap at the highest bit width of 6 or more exceeds the gap at the lowest bit width of 4 or less.",
        _c8,
        ("../plots/analysis/figure12.png",),
        needs="bit widths both >= 6 and <= 4",
    ),
    Claim(
        "C9",
        "6.1.2",
        "Fed the class-conditional vs the class-unconditional calibration set, the pre-calibration generative model's embedding activations differ more (KS about 0.19) than its LSTM activations (about 0.03), at every bit width.",
        "At each bit width: KS(embedding, UC set vs CC set) - KS(LSTM, UC set vs CC set) > 0.",
        _c9,
        ("../plots/analysis/figure13.png",),
        needs=f"analysis.schemes [{CC}, {UC}]",
    ),
    Claim(
        "C10",
        "6.1.2",
        "At 3-5 bits the class-conditionally calibrated generative model shows larger final-layer activation shifts from the float model than the class-unconditional one.",
        "At each bit width of 5 and lower: KS(CC outputs vs float) - KS(UC outputs vs float) > 0 on the common test documents.",
        _c10,
        ("../plots/analysis/figure14.png",),
        needs=f"analysis.schemes [{CC}, {UC}] and a bit width of 5 or lower",
    ),
    Claim(
        "C11",
        "6.1.3",
        "At 3 bits the class-unconditionally calibrated generative model's token-level losses shift right, against the float and the class-conditional model.",
        "Mean per-token loss difference (same tokens) > 0, documents resampled whole.",
        _c11,
        ("../plots/analysis/figure15.png",),
        needs=f"analysis.schemes [{CC}, {UC}]",
    ),
    Claim(
        "C12",
        "6.1.3",
        "Noisy input shifts the 3-bit class-conditional model's token losses right as well.",
        "Mean over documents of (mean token loss on the noisy text - on the clean text) > 0 for the same model.",
        _c12,
        ("../plots/analysis/figure15.png",),
    ),
    Claim(
        "C13",
        "5.5",
        "The full-precision generative classifier is more robust to character noise than the discriminative one (slower decline beyond 0.02).",
        f"Per document: accuracy lost from clean text to the mean over noise levels above {BEYOND_002:g} (noise_training.noise_model); "
        "the discriminative model's loss - the generative model's > 0, on the whole test split.",
        _c13,
        ("../plots/noise/figures/figure9_uniform_substitution.png",),
        needs="noise levels 0 and above 0.02",
    ),
    Claim(
        "C14",
        "5.5, 7",
        "After quantization the generative model's noise advantage shrinks, most at 4 and 3 bits, where it declines sharply for noise of 0.04 and more.",
        f"At 4 and 3 bits, class-conditional: the generative model's noise advantage (discriminative loss - generative loss, clean to levels >= {FROM_004:g}) "
        "is larger for the float models than for the quantized ones, on the quantized cells' test documents.",
        _c14,
        ("../plots/noise/figures/figure10_class_conditional_uniform_substitution.png",),
        needs=f"noise_quantized cells ({CC}) for noise_training.noise_model at 4 or 3 bits",
    ),
    Claim(
        "C15",
        "7",
        "A generative model trained with noise is more robust on noisy input at low bit widths than the clean-trained one (Figure 16).",
        "At each bit width of 5 and lower, class-conditional, at noise_training.eval_level: acc(noise-trained) - acc(clean-trained) > 0 on the same documents.",
        _c15,
        ("../plots/noise/figure16/figure16.png",),
        needs="the noise-trained variant on this dataset (grid.noise_trained_datasets)",
    ),
)


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


POOLED = "seeds pooled"
COLUMNS = ["tree", "claim", "dataset", "setting", "quantity", "estimate", "low", "high", "unit", "test", "p_value", "verdict"]


def findings_stage(
    root: Path,
    datasets: Sequence[str],
    bit_widths: Sequence[int],
    schemes: Sequence[str],
    seed: int,
    settings: dict[str, Any],
    trees: Sequence[TreeRun] = (),
    noise: NoiseGrid | None = None,
) -> pd.DataFrame:
    """Judge every claim on every dataset, the prediction-only claims also in every tree and pooled over the
    seed trees; write reports/findings.md and reports/findings.csv."""
    paths = ProjectPaths(root)
    contexts = {d: Context(paths, d, tuple(bit_widths), tuple(schemes), seed, noise=noise) for d in datasets}
    judged = {"main": _judge_all(contexts, CLAIMS)}
    for tree in trees:
        judged[tree.name] = _judge_all({d: _tree_context(tree, d) for d in datasets if d in tree.datasets}, PER_TREE)
    seed_trees = [t for t in trees if t.seed_only]
    pools = _seed_pools(contexts, seed_trees) if seed_trees else {}
    if pools:
        judged[POOLED] = _judge_all(pools, PER_TREE)
    table = pd.DataFrame(
        [
            [
                tree,
                j.claim,
                j.dataset,
                j.setting,
                j.quantity,
                j.estimate.mean,
                j.estimate.low,
                j.estimate.high,
                "fraction" if j.unit == "points" else "raw",
                j.test,
                j.p_value,
                j.verdict,
            ]
            for tree, judgements in judged.items()
            for rows in judgements.values()
            for j in rows
        ],
        columns=COLUMNS,
        dtype=object,
    )
    reports = root / "reports"
    write_frame(reports / "findings.csv", table)
    text = _markdown(paths, contexts, judged["main"], settings, seed_trees)
    text += _seeds_section(pools, judged.get(POOLED, {}), seed_trees, seed)
    text += _trees_section([t for t in trees if not t.seed_only], judged, datasets)
    text += _settings_section(paths, contexts, [t for t in trees if not t.seed_only])
    atomic_write_text(reports / "findings.md", text)
    return table


PER_TREE = tuple(c for c in CLAIMS if c.predictions_only)


def _tree_context(tree: TreeRun, dataset: str) -> Context:
    return Context(tree.paths, dataset, tree.bit_widths, tree.schemes, tree.seed, tree.model_types)


def _judge_all(contexts: Mapping[str, Context], claims: Sequence[Claim]) -> dict[tuple[str, str], list[Judgement]]:
    return {(claim.key, d): [] if claim.judge is None else _judge(claim, ctx) for claim in claims for d, ctx in contexts.items()}


def _seed_pools(contexts: Mapping[str, Context], seed_trees: Sequence[TreeRun]) -> dict[str, SeedPool]:
    """Per dataset: the main tree and the seed trees on the cells they all ran."""
    pools = {}
    for dataset, main in contexts.items():
        trees = [t for t in seed_trees if dataset in t.datasets and set(t.model_types) == set(main.model_types)]
        if not trees:
            continue
        widths = tuple(b for b in main.bit_widths if all(b in t.bit_widths for t in trees))
        schemes = tuple(s for s in main.schemes if all(s in t.schemes for t in trees))
        members = [Context(p, dataset, widths, schemes, seed) for p, seed in [(main.paths, main.seed), *((t.paths, t.seed) for t in trees)]]
        pools[dataset] = SeedPool(main.paths, dataset, widths, schemes, main.seed, members=tuple(members))
    return pools


def _seeds_section(pools: Mapping[str, SeedPool], pooled: dict[tuple[str, str], list[Judgement]], seed_trees: Sequence[TreeRun], seed: int) -> str:
    """The prediction-only claims pooled over the training seeds, with the spread of the per-seed estimates."""
    if not pools:
        return ""
    pool = next(iter(pools.values()))
    seeds = ", ".join([f"{seed} (main tree)", *(f"{t.seed} (`{t.name}`)" for t in seed_trees)])
    lines = [
        "## Across training seeds",
        "",
        f"Seeds: {seeds}; cells run under every seed: bit widths {', '.join(map(str, pool.bit_widths))}, schemes {', '.join(pool.schemes)}. "
        f"**Pooled** averages each test document's correctness over the {len(pool.members)} seeds and judges the comparison by one document "
        f"bootstrap of that average ({BOOTSTRAP_RESAMPLES} resamples; the paired test combined across seeds). **Over seeds** is the mean of "
        "the per-seed estimates with its Student-t 95% interval, which covers training-seed variance.",
        "",
        "| claim | dataset | setting | pooled estimate | 95% interval | p | verdict | over seeds | per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for claim in PER_TREE:
        for dataset, ctx in pools.items():
            if (claim.key, dataset) not in pooled:
                continue
            per_seed = [_judge(claim, member) if claim.judge else [] for member in ctx.members]
            for i, j in enumerate(pooled[(claim.key, dataset)]):
                estimates = [rows[i].estimate.mean for rows in per_seed]
                spread = mean_interval(estimates)
                mean, interval = j.formatted()
                over = f"{100 * spread.mean:+.2f} [{100 * spread.low:+.2f}, {100 * spread.high:+.2f}]"
                each = ", ".join(f"{100 * e:+.2f}" for e in estimates)
                lines.append(f"| {claim.key} | {dataset} | {j.setting} | {mean} pts | {interval} | {_fmt_p(j.p_value)} | {j.verdict} | {over} | {each} |")
    verdicts = [f"{c.key} {d}: **{_claim_verdict(c, pooled[(c.key, d)])}**" for c in PER_TREE for d in pools]
    lines += ["", "Per claim (pooled): " + "; ".join(verdicts) + ".", ""]
    return "\n".join(lines) + "\n"


def _trees_section(trees: Sequence[TreeRun], judged: Mapping[str, dict[tuple[str, str], list[Judgement]]], datasets: Sequence[str]) -> str:
    """The prediction-only claims in each tree whose settings differ from the main tree's beyond the seed."""
    if not trees:
        return ""
    lines = [
        "## Under other settings (trees of params.yaml)",
        "",
        "| claim | tree | its settings | " + " | ".join(datasets) + " |",
        "|---|---|---|" + "---|" * len(datasets),
    ]
    for claim in PER_TREE:
        for tree in trees:
            verdicts = [
                _claim_verdict(claim, judged[tree.name][(claim.key, d)]) if (claim.key, d) in judged[tree.name] else "not in this tree" for d in datasets
            ]
            lines.append(f"| {claim.key} | `{tree.name}` | {tree.changes} | " + " | ".join(verdicts) + " |")
    lines += ["", "Every comparison behind these verdicts is in `reports/findings.csv` (column `tree`).", ""]
    return "\n".join(lines) + "\n"


SETTINGS_SCHEMES = ("class_conditional", "class_unconditional")


def _settings_section(paths: ProjectPaths, contexts: Mapping[str, Context], trees: Sequence[TreeRun]) -> str:
    """Per dataset, model and low bit width: the accuracy of the composition schemes in the main tree and in every
    tree whose settings differ from it beyond the seed (the study's axes: LSTM precision, decoder feeding, training length)."""
    if not trees:
        return ""
    runs = [("main", "the main tree", paths, None), *((t.name, t.changes, t.paths, t) for t in trees)]
    lines = [
        "## Accuracy by setting at low bit widths",
        "",
        "Test accuracy (%) of each calibration scheme per tree, with the float model's and the epochs it trained; the cell state's "
        "largest magnitude (`|c| max`, class-conditional cell) shows where the LSTM's state is quantized to zero. From each tree's "
        "`metrics/calibrate` and `metrics/train` files.",
        "",
    ]
    for dataset, ctx in contexts.items():
        schemes = [s for s in ctx.schemes if s in SETTINGS_SCHEMES or s.startswith(("imbalanced_", "classes_"))]
        lines += [
            f"### {dataset}",
            "",
            "| tree | its settings | model | bits | epochs | float | " + " | ".join(schemes) + " | \\|c\\| max |",
            "|---" * (7 + len(schemes)) + "|",
        ]
        for model_type in ctx.model_types:
            for bits in ctx.low_bits():
                for name, changes, root, tree in runs:
                    if tree is not None and (dataset not in tree.datasets or model_type not in tree.model_types or bits not in tree.bit_widths):
                        continue
                    if tree is not None and not set(schemes) <= set(tree.schemes):
                        continue  # a tree that runs fewer schemes has no row here (its verdicts are above)
                    metrics = {s: read_json(root.calibrate_metrics(dataset, model_type, bits, s)) for s in schemes}
                    first = metrics[schemes[0]]
                    c_max = metrics.get("class_conditional", first).get("hidden_state", {}).get("abs_c_max")
                    accuracies = " | ".join(f"{100 * metrics[s]['accuracy']:.2f}" for s in schemes)
                    c_text = "n/a" if c_max is None else f"{c_max:.3g}"
                    epochs = read_json(root.train_metrics(dataset, model_type))["epochs_run"]
                    lines.append(f"| `{name}` | {changes} | {model_type} | {bits} | {epochs} | {100 * first['float_accuracy']:.2f} | {accuracies} | {c_text} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _judge(claim: Claim, ctx: Context) -> list[Judgement]:
    if not ctx.has(*claim.schemes) or not set(claim.model_types) <= set(ctx.model_types):
        return []
    return claim.judge(ctx)


def _claim_verdict(claim: Claim, rows: list[Judgement]) -> str:
    if claim.judge is None:
        return "not judged"
    if not rows:
        return "not in this grid"
    return overall([j.verdict for j in rows], several=claim.several)


def _markdown(
    paths: ProjectPaths,
    contexts: dict[str, Context],
    judgements: dict[tuple[str, str], list[Judgement]],
    settings: dict[str, Any],
    seed_trees: Sequence[TreeRun] = (),
) -> str:
    datasets = list(contexts)
    lines = [
        "# Findings: the paper's claims judged on this pipeline's results",
        "",
        "Generated by the `findings` stage (`./run dvc repro findings`) from the pipeline's outputs; do not edit. "
        "Every number and verdict below is computed by `src/lstm_ptq/pipeline/findings.py`; the data behind each row is in `reports/findings.csv`.",
        "",
        "## What was run",
        "",
    ]
    for dataset, ctx in contexts.items():
        metrics = read_json(paths.evaluate_metrics(dataset, "generative"))
        lines.append(f"- **{dataset}**: {metrics['train_rows']:,} training documents, {len(ctx.labels):,} test documents, {len(ctx.classes)} classes.")
    if seed_trees:
        others = ", ".join(f"{t.seed} (`{t.name}`: bit widths {', '.join(map(str, t.bit_widths))})" for t in seed_trees)
        seeds = (
            f"- **Seeds**: the main tree's training seed and calibration draw (`seed: {settings['seed']}`; every cell below), and {others}. "
            "The tables below are the main seed's, with intervals and p-values over test documents (paired tests of two models on the same "
            "documents); section *Across training seeds* pools the seeds on the cells they all ran and gives the spread over seeds."
        )
    else:
        seeds = (
            f"- **Seeds**: one training seed and one calibration draw (`seed: {settings['seed']}`). Intervals and p-values are over test "
            "documents (paired tests of two models on the same documents) and do not cover training-seed variance."
        )
    lines += [
        seeds,
        f"- **Bit widths**: {', '.join(map(str, settings['bit_widths']))}; **calibration schemes**: {', '.join(settings['schemes'])}.",
        "- **The study's other axes, at the values this run used**: "
        + "; ".join(f"`{k}`: {v}" for k, v in settings["axes"].items())
        + ". Each is a params entry; a run with another value regenerates this report for it.",
        "",
        "## How a verdict is computed",
        "",
        f"- **Per comparison** (alpha = {ALPHA}): {VERDICT_RULE}",
        f"- **Per claim**: {OVERALL_RULE}",
        f"- **Tests**: a plain accuracy difference uses McNemar's exact test for its p-value; differences of accuracy drops and margins use a document "
        f"bootstrap ({BOOTSTRAP_RESAMPLES} resamples); every interval is a 95% bootstrap percentile interval. KS and token-loss comparisons use the "
        "bootstraps of the analysis stages (see `src/lstm_ptq/pipeline/analysis.py`).",
        "",
        "## Summary",
        "",
        "| claim | section | paper's claim | " + " | ".join(datasets) + " |",
        "|---|---|---|" + "---|" * len(datasets),
    ]
    for claim in CLAIMS:
        verdicts = [_claim_verdict(claim, judgements[(claim.key, d)]) for d in datasets]
        lines.append(f"| {claim.key} | {claim.section} | {claim.text} | " + " | ".join(verdicts) + " |")
    lines += ["", "## Claims", ""]
    for claim in CLAIMS:
        lines += [f"### {claim.key} (section {claim.section})", "", f"**Paper**: {claim.text}", "", f"**Tested as**: {claim.reading}", ""]
        rows = [j for d in datasets for j in judgements[(claim.key, d)]]
        if claim.judge is not None and not rows:
            lines += [f"Not in this grid: the claim needs {claim.needs}.", ""]
        if rows:
            lines += ["| dataset | setting | quantity | estimate | 95% interval | test | p | verdict |", "|---|---|---|---|---|---|---|---|"]
            for j in rows:
                mean, interval = j.formatted()
                unit = " pts" if j.unit == "points" else ""
                lines.append(f"| {j.dataset} | {j.setting} | {j.quantity} | {mean}{unit} | {interval} | {j.test} | {_fmt_p(j.p_value)} | {j.verdict} |")
            lines.append("")
            lines.append("Per dataset: " + "; ".join(f"{d}: **{_claim_verdict(claim, judgements[(claim.key, d)])}**" for d in datasets) + ".")
            lines.append("")
        for figure in claim.figures:
            if figure.endswith(".png"):
                lines += [f"![{claim.key}]({figure})", ""]
            else:
                lines += [f"Source: [{figure}]({figure})", ""]
    lines += _diagnostics(paths, datasets)
    return "\n".join(lines) + "\n"


def _diagnostics(paths: ProjectPaths, datasets: Sequence[str]) -> list[str]:
    """What explains the low-bit results (docs/quantization.md, pitfall 7), from metrics/ptq_grid.csv: the share
    of the quantized LSTM's h_t values that are exactly zero on test documents, and whether GPFQ lowered the final
    layer's output error, per model and bit width (class-conditional calibration)."""
    grid = read_frame(paths.ptq_grid())
    cells = grid.loc[grid["calibration_scheme"] == CC]
    if cells.empty:
        return []
    lines = [
        "## Diagnostics",
        "",
        "Read with the verdicts above (class-conditional calibration; `metrics/ptq_grid.csv`): `h_t = 0` is the share of the quantized "
        "LSTM's hidden-state values that are exactly zero on test documents. A discriminative classifier reads only the last `h_t`; a "
        "generative one with `h_t = 0` keeps the decoder bias and label term, a class-conditional unigram model (docs/quantization.md, "
        "pitfall 7). The last column is the final layer's output error on calibration batches before -> after GPFQ (equation 22).",
        "",
        "| dataset | model | bits | accuracy | `h_t = 0` | output error before -> after GPFQ |",
        "|---|---|---|---|---|---|",
    ]
    for row in cells.loc[cells["dataset"].isin(datasets)].itertuples(index=False):
        error = f"{row.final_layer_error_before_gpfq:.2e} -> {row.final_layer_error_after_gpfq:.2e}" if pd.notna(row.final_layer_error_before_gpfq) else "n/a"
        lines.append(f"| {row.dataset} | {row.model_type} | {row.bit_width} | {100 * row.accuracy:.2f}% | {row.hidden_zero_fraction:.3f} | {error} |")
    lowered = int((grid["final_layer_error_after_gpfq"] < grid["final_layer_error_before_gpfq"]).sum())
    lines += ["", f"Over the whole grid GPFQ lowered the final layer's output error in {lowered} of {len(grid)} cells.", ""]
    return lines
