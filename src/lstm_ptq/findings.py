"""The findings report: each claim of the paper, our numbers with intervals, the test, and a computed verdict.

A claim is turned into one or more *comparisons*, each a mean difference that the paper says is positive:

- accuracy comparisons pair two models on the same test documents (the per-document predictions the evaluate
  and calibrate stages saved): the estimate is the mean of a per-document difference of correctness (an
  accuracy difference, a difference of accuracy drops, or a margin minus a drop), its interval and p-value a
  document bootstrap (:func:`lstm_ptq.stats.bootstrap_mean`); a plain accuracy difference also gets McNemar's
  exact test, which then decides;
- KS comparisons (Figures 12-14) read the bootstrap intervals the ``ks_analysis`` stage computed for the
  difference of two KS statistics (ks_gaps.csv);
- token-loss comparisons (Figure 15) read the document-level bootstrap of mean token-loss shifts that the
  ``token_losses`` stage computed.

Every verdict is :func:`lstm_ptq.stats.verdict` on the estimate and p-value (the rule is printed in the
report). Where a claim covers several settings (bit widths), each setting is judged, then the claim as a whole
by :data:`OVERALL_RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .stats import Interval, bootstrap_mean, mcnemar_test, verdict

BOOTSTRAP_RESAMPLES = 2000  # document bootstrap of every accuracy comparison
ALPHA = 0.05
LOW_BIT_WIDTHS = (5, 4, 3)  # "5-bit and lower" (section 5.3): where the paper places the sharp generative decline
SMALL_DROP = 0.01  # "stable down to 4-bit" (section 5.4) read as: an accuracy drop under 1 point
MODERATE_DROP = 0.04  # "degrades only moderately at 3-bit ... under 4%" (section 5.4)

OVERALL_RULE = (
    "A claim judged at several settings is reproduced when every setting is reproduced, contradicted when at "
    "least one setting is contradicted and none is reproduced, and partly reproduced otherwise when at least one "
    "setting is reproduced; with no setting reproduced or contradicted it is inconclusive. Claims about 'several' "
    "bit widths are reproduced when at least two bit widths are."
)


@dataclass(frozen=True)
class Judgement:
    """One comparison of one claim at one setting."""

    claim: str
    dataset: str
    setting: str  # e.g. "4-bit"
    quantity: str  # what the estimate is, in words
    estimate: Interval  # in the quantity's unit (accuracy: a fraction)
    test: str  # the test that gave the p-value
    p_value: float
    verdict: str
    unit: str = "points"  # how the report prints it: accuracy points (x100) or raw values

    def formatted(self) -> tuple[str, str]:
        scale = 100.0 if self.unit == "points" else 1.0
        digits = 2 if self.unit == "points" else 3
        mean = f"{scale * self.estimate.mean:+.{digits}f}"
        if math.isnan(self.estimate.low):
            return mean, "n/a"
        return mean, f"[{scale * self.estimate.low:+.{digits}f}, {scale * self.estimate.high:+.{digits}f}]"


def overall(verdicts: Sequence[str], *, several: bool = False) -> str:
    """:data:`OVERALL_RULE` over the verdicts of one claim's settings."""
    reproduced = sum(v == "reproduced" for v in verdicts)
    contradicted = sum(v == "contradicted" for v in verdicts)
    if several:
        if reproduced >= 2:
            return "reproduced"
        return "contradicted" if contradicted and not reproduced else "inconclusive"
    if verdicts and reproduced == len(verdicts):
        return "reproduced"
    if contradicted and not reproduced:
        return "contradicted"
    return "partly reproduced" if reproduced else "inconclusive"


# --------------------------------------------------------------------------------------------------
# Accuracy comparisons on the same documents
# --------------------------------------------------------------------------------------------------


def paired_difference(
    claim: str, dataset: str, setting: str, quantity: str, values: np.ndarray, seed: int, mcnemar: tuple[np.ndarray, np.ndarray] | None = None
) -> Judgement:
    """Judge the claim "mean(values) > 0" for per-document ``values``; with ``mcnemar`` (the two models'
    per-document correctness) McNemar's exact test gives the p-value and the bootstrap the interval."""
    boot = bootstrap_mean(values, n_resamples=BOOTSTRAP_RESAMPLES, confidence=0.95, seed=seed)
    if mcnemar is not None:
        test = mcnemar_test(*mcnemar)
        p_value, test_name = test.p_value, f"McNemar exact ({test.b} vs {test.c} discordant of {test.n})"
    else:
        p_value, test_name = boot.p_value, f"document bootstrap ({boot.resamples} resamples of {boot.estimate.n})"
    return Judgement(claim, dataset, setting, quantity, boot.estimate, test_name, p_value, verdict(boot.estimate, p_value, +1, ALPHA))


def accuracy_difference(claim: str, dataset: str, setting: str, quantity: str, correct_a: np.ndarray, correct_b: np.ndarray, seed: int) -> Judgement:
    """acc(A) - acc(B) > 0 on the same documents. Correctness pooled over seeds (a fraction per document, not
    right or wrong) has no McNemar test: the document bootstrap gives its p-value."""
    pooled = correct_a.dtype != bool or correct_b.dtype != bool
    values = correct_a.astype(float) - correct_b.astype(float)
    return paired_difference(claim, dataset, setting, quantity, values, seed, None if pooled else (correct_a, correct_b))


def drop_difference(
    claim: str, dataset: str, setting: str, quantity: str, drop_a: tuple[np.ndarray, np.ndarray], drop_b: tuple[np.ndarray, np.ndarray], seed: int
) -> Judgement:
    """(acc_A,before - acc_A,after) - (acc_B,before - acc_B,after) > 0: A loses more than B, per document."""
    values = (drop_a[0].astype(float) - drop_a[1]) - (drop_b[0].astype(float) - drop_b[1])
    return paired_difference(claim, dataset, setting, quantity, values, seed)


def drop_below(claim: str, dataset: str, setting: str, quantity: str, before: np.ndarray, after: np.ndarray, margin: float, seed: int) -> Judgement:
    """margin - (acc_before - acc_after) > 0: the accuracy drop stays under ``margin``."""
    return paired_difference(claim, dataset, setting, quantity, margin - (before.astype(float) - after), seed)


# --------------------------------------------------------------------------------------------------
# Differences the analysis stages already bootstrapped
# --------------------------------------------------------------------------------------------------


def precomputed(claim: str, dataset: str, setting: str, quantity: str, row: Mapping[str, float], test: str, *, sign: int = 1, unit: str = "raw") -> Judgement:
    """A difference with its interval and p-value from an analysis table (``mean``/``difference``, ``low``,
    ``high``, ``p_value``), judged against the paper's ``sign``."""
    mean = float(row["difference"] if "difference" in row else row["mean"])
    estimate = Interval(mean, float(row["low"]), float(row["high"]), int(row.get("n", row.get("documents", 0))), 0.95)
    return Judgement(claim, dataset, setting, quantity, estimate, test, float(row["p_value"]), verdict(estimate, float(row["p_value"]), sign, ALPHA), unit)


def interval_ordering(claim: str, dataset: str, setting: str, quantity: str, larger: Interval, smaller: Interval) -> Judgement:
    """The claim "``larger`` exceeds ``smaller``" for two separately estimated quantities: reproduced when the
    intervals do not overlap in the claimed order, contradicted when they do not overlap in the other, and
    inconclusive when they overlap (no test of the difference; the p-value column is empty)."""
    mean = larger.mean - smaller.mean
    if larger.low > smaller.high:
        outcome = "reproduced"
    elif larger.high < smaller.low:
        outcome = "contradicted"
    else:
        outcome = "inconclusive"
    estimate = Interval(mean, math.nan, math.nan, 0, 0.95)
    return Judgement(claim, dataset, setting, quantity, estimate, "non-overlap of the two 95% intervals", math.nan, outcome, "raw")


Loader = Callable[[str, str, str], np.ndarray]  # (model_type, bit width or "float", scheme) -> per-document correctness
