"""Statistics of the study's comparisons: KS tests and KDEs of losses (section 6, Figure 15), intervals
over seeds, paired tests of two classifiers on the same documents, and the verdict rule of the findings report.

Every test, interval and density comes from scipy.stats; this module validates the inputs, subsamples
large samples, and names the results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy import stats

from .errors import DataError, ParamError

CombineMethod = Literal["fisher", "pearson", "tippett", "stouffer", "mudholkar_george"]
Verdict = Literal["reproduced", "contradicted", "inconclusive"]

VERDICT_RULE = (
    "A claim of the paper is reproduced when the p-value of the paired test is below alpha and the confidence interval "
    "of the difference lies entirely on the side of zero that the paper claims (zero itself outside the interval); it is "
    "contradicted when the p-value is below alpha and the interval lies entirely on the other side of zero; it is "
    "inconclusive otherwise, that is when the p-value is alpha or more or when the interval contains zero. With a single "
    "seed there is no interval, and the verdict rests on the p-value and the sign of the estimated difference alone: "
    "reproduced when the p-value is below alpha and the estimate has the paper's sign, contradicted when the p-value is "
    "below alpha and the estimate has the other sign, inconclusive otherwise (an estimate of exactly zero included)."
)


@dataclass(frozen=True)
class KsResult:
    """Two-sample Kolmogorov-Smirnov test; n_a, n_b are the sizes tested, n_*_total the sizes before subsampling."""

    ks_statistic: float
    p_value: float
    n_a: int
    n_b: int
    n_a_total: int
    n_b_total: int


@dataclass(frozen=True)
class Interval:
    """An estimated mean with its two-sided confidence interval [low, high]; NaN bounds when there is none."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float


@dataclass(frozen=True)
class PairedTest:
    """Exact McNemar test of two classifiers on the same n documents.

    b: documents classifier A gets right and B wrong; c: the reverse. accuracy_difference = acc_A - acc_B = (b - c) / n.
    """

    b: int
    c: int
    n: int
    accuracy_difference: float
    p_value: float


@dataclass(frozen=True)
class CombinedTest:
    """Independent p-values (one per seed) combined into one by ``method``."""

    method: str
    statistic: float
    p_value: float
    n: int


def _sample(values, name: str) -> np.ndarray:
    """``values`` flattened to float64; empty or non-finite input is an error naming ``name``."""
    try:
        x = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise DataError(f"{name}: not an array of numbers ({error})") from error
    if x.size == 0:
        raise DataError(f"{name}: empty sample")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise DataError(f"{name}: {bad} of {x.size} values are not finite (NaN or inf)")
    return x


def _correctness(values, name: str) -> np.ndarray:
    """Per-document correctness as a flat bool array; only bools or 0/1 are accepted."""
    x = np.asarray(values).ravel()
    if x.size == 0:
        raise DataError(f"{name}: no documents")
    if x.dtype != np.bool_:
        if not np.isin(x, (0, 1)).all():
            raise DataError(f"{name}: per-document correctness must be booleans or 0/1, got values such as {x[~np.isin(x, (0, 1))][:3].tolist()}")
        x = x.astype(bool)
    return x


def _paired_correctness(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _correctness(correct_a, "correct_a"), _correctness(correct_b, "correct_b")
    if a.size != b.size:
        raise DataError(f"correct_a and correct_b must cover the same documents: {a.size} != {b.size} documents")
    return a, b


def _check_max_samples(max_samples: int | None) -> None:
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2):
        raise ParamError(f"max_samples: expected None or an integer >= 2, got {max_samples!r}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ParamError(f"confidence: expected a level strictly between 0 and 1, got {confidence!r}")


def _check_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ParamError(f"n_resamples: expected a positive integer, got {n_resamples!r}")


def _bootstrap_p_value(distribution: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "zero": twice the smaller share of resampled values on either side of 0,
    each counted as (1 + k) / (1 + resamples) (:class:`BootstrapTest`)."""
    below = (1 + int(np.count_nonzero(distribution <= 0.0))) / (distribution.size + 1)
    above = (1 + int(np.count_nonzero(distribution >= 0.0))) / (distribution.size + 1)
    return min(1.0, 2.0 * min(below, above))


def _subsample(x: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``max_samples`` values of ``x``, drawn without replacement; ``x`` itself when it is no larger."""
    if max_samples is None or x.size <= max_samples:
        return x
    return rng.choice(x, size=max_samples, replace=False)


# scipy.stats.ks_2samp's method="auto": the exact p-value, and with it D rounded to a multiple of 1/lcm(n1, n2),
# when neither sample is larger than this (scipy's MAX_AUTO_N)
_KS_EXACT_MAX_N = 10_000


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """``scipy.stats.ks_2samp(a, b).statistic`` (two-sided, ``method="auto"``) without its p-value.

    The bootstrap of :func:`ks_difference` uses only the statistic of each resample, and the p-value is
    most of ks_2samp's time (the asymptotic ``kstwo.sf`` above 10,000 values). D is the largest distance
    between the two empirical CDFs at the pooled values, as ks_2samp computes it; where ks_2samp would
    compute an exact p-value it first rounds D to the nearest multiple of 1/lcm(n1, n2), and so does this.
    tests/test_stats.py checks the value against ks_2samp's, bit for bit, in both regimes and with ties.
    """
    first, second = np.sort(a), np.sort(b)
    n1, n2 = first.shape[0], second.shape[0]
    pooled = np.concatenate([first, second])
    diffs = np.searchsorted(first, pooled, side="right") / n1 - np.searchsorted(second, pooled, side="right") / n2
    below = np.clip(-diffs[np.argmin(diffs)], 0, 1)
    above = diffs[np.argmax(diffs)]
    d = below if below > above else above
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        lcm = (n1 // math.gcd(n1, n2)) * n2
        d = int(np.round(d * lcm)) * 1.0 / lcm
    return float(d)


def ks_two_sample(a, b, *, max_samples: int | None, seed: int) -> KsResult:
    """Two-sample KS test of two loss distributions (section 6), ``scipy.stats.ks_2samp``, two-sided.

    Each sample larger than ``max_samples`` is replaced by ``max_samples`` of its values drawn without
    replacement by ``numpy.random.default_rng(seed)``, ``a`` first (so ``a``'s subsample does not depend on ``b``).
    On millions of token losses every p-value is ~0 and says nothing; on a fixed-size subsample it stays
    informative, while the KS statistic itself changes by O(1/sqrt(max_samples)). The p-value is exact for
    small samples and asymptotic for large ones (scipy's ``method="auto"``; its warning when the exact computation fails and it falls back is silenced).
    """
    _check_max_samples(max_samples)
    x, y = _sample(a, "a"), _sample(b, "b")
    rng = np.random.default_rng(seed)
    xs, ys = _subsample(x, max_samples, rng), _subsample(y, max_samples, rng)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
        result = stats.ks_2samp(xs, ys)
    return KsResult(float(result.statistic), float(result.pvalue), xs.size, ys.size, x.size, y.size)


def kde_curve(values, grid_points: int, *, max_samples: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian KDE of a loss sample on an even grid (Figure 15: token-level losses), ``scipy.stats.gaussian_kde``.

    Bandwidth by Scott's rule; the grid runs from min - 3h to max + 3h (h: the bandwidth), so it holds all
    but ~0.1% of the density. A sample above ``max_samples`` is subsampled as in :func:`ks_two_sample`.
    A constant sample has no KDE (zero bandwidth) and is an error.
    """
    if isinstance(grid_points, bool) or not isinstance(grid_points, int) or grid_points < 2:
        raise ParamError(f"grid_points: expected an integer >= 2, got {grid_points!r}")
    _check_max_samples(max_samples)
    x = _subsample(_sample(values, "values"), max_samples, np.random.default_rng(seed))
    if np.ptp(x) == 0:
        raise DataError(f"values: a KDE needs at least two distinct values; all {x.size} values equal {float(x[0])!r}")
    kde = stats.gaussian_kde(x)
    h = math.sqrt(float(kde.covariance[0, 0]))
    grid = np.linspace(x.min() - 3.0 * h, x.max() + 3.0 * h, grid_points)
    return grid, kde(grid)


def mean_interval(values, confidence: float = 0.95) -> Interval:
    """Mean over seeds with its Student-t interval, mean +- t_{(1+confidence)/2, n-1} * s / sqrt(n) (``scipy.stats.t``).

    One value (one seed) has no interval: low and high are NaN. Equal values give the point interval [mean, mean].
    """
    _check_confidence(confidence)
    x = _sample(values, "values")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    sem = float(stats.sem(x))
    if sem == 0.0:
        return Interval(mean, mean, mean, x.size, confidence)
    low, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), x.size, confidence)


def wilson_interval(accuracy: float, documents: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of an accuracy measured on ``documents`` test documents
    (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``): the error bar of one accuracy figure.

    ``accuracy * documents`` is rounded to the nearest count (accuracies are stored to 6 decimals)."""
    _check_confidence(confidence)
    if isinstance(documents, bool) or not isinstance(documents, (int, np.integer)) or documents < 1:
        raise DataError(f"documents: {documents!r}; expected a positive integer")
    if not 0.0 <= accuracy <= 1.0:
        raise DataError(f"accuracy: {accuracy!r}; expected a fraction in [0, 1]")
    interval = stats.binomtest(round(accuracy * int(documents)), int(documents)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_test(correct_a, correct_b) -> PairedTest:
    """Exact two-sided McNemar test: ``scipy.stats.binomtest`` of b successes in b + c trials at p = 0.5.

    Only discordant documents (one classifier right, the other wrong) carry evidence; with none, p = 1.
    """
    a, b = _paired_correctness(correct_a, correct_b)
    only_a = int(np.count_nonzero(a & ~b))
    only_b = int(np.count_nonzero(~a & b))
    p_value = float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return PairedTest(only_a, only_b, a.size, (only_a - only_b) / a.size, p_value)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis) - b.mean(axis=axis)


def paired_bootstrap_accuracy_difference(correct_a, correct_b, *, n_resamples: int, confidence: float, seed: int) -> Interval:
    """acc_A - acc_B on the same documents with its bootstrap percentile interval (``scipy.stats.bootstrap``, paired).

    Documents are resampled jointly, so both classifiers see the same resample. The percentile method is
    used because BCa is undefined when the two classifiers agree on every document; the interval is then [0, 0].
    Resamples are evaluated in batches of ~4M document draws to bound memory on a full test split.
    """
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    a, b = _paired_correctness(correct_a, correct_b)
    a, b = a.astype(np.float64), b.astype(np.float64)
    result = stats.bootstrap(
        (a, b),
        _mean_difference,
        n_resamples=n_resamples,
        batch=max(1, 4_000_000 // a.size),
        vectorized=True,
        paired=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return Interval(float(_mean_difference(a, b)), float(ci.low), float(ci.high), a.size, confidence)


@dataclass(frozen=True)
class BootstrapTest:
    """A mean difference with its bootstrap percentile interval and the two-sided bootstrap p-value of
    "the mean is zero": twice the smaller share of resampled means on either side of zero, each share
    counted as (1 + k) / (1 + resamples) so that no p-value is 0."""

    estimate: Interval
    p_value: float
    resamples: int


@dataclass(frozen=True)
class KSDifferenceTest(BootstrapTest):
    """:class:`BootstrapTest` of KS(first) - KS(second), with the two KS statistics of the samples it compared
    (after subsampling): ``first_statistic - second_statistic`` is ``estimate.mean``. Report these beside the
    difference, not statistics of other (larger) samples: a KS statistic near zero grows as the sample shrinks."""

    first_statistic: float
    second_statistic: float


def _sum_ratio(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def bootstrap_mean(values, *, groups=None, n_resamples: int, confidence: float, seed: int) -> BootstrapTest:
    """The mean of per-unit ``values`` (e.g. per-document differences in correctness between two models on the
    same documents) with a bootstrap interval and p-value (``scipy.stats.bootstrap``, percentile method).

    With ``groups`` (one id per value, e.g. the document of each token) whole groups are resampled, the
    cluster bootstrap: values of one document are not independent, so resampling them one by one would
    understate the uncertainty. The statistic is then the mean over all values of the resampled groups.
    """
    _check_confidence(confidence)
    _check_resamples(n_resamples)
    x = _sample(values, "values")
    if groups is None:
        sums, counts = x, np.ones_like(x)
    else:
        ids = np.asarray(groups).ravel()
        if ids.size != x.size:
            raise DataError(f"groups: {ids.size} group ids for {x.size} values")
        _, index = np.unique(ids, return_inverse=True)
        sums, counts = np.bincount(index, weights=x), np.bincount(index).astype(np.float64)
    estimate = float(_sum_ratio(sums, counts))
    if np.ptp(sums / counts) == 0.0:  # every group has the same mean (one group included): so has every resample
        p_value = 1.0 if estimate == 0.0 else min(1.0, 2.0 / (n_resamples + 1))
        return BootstrapTest(Interval(estimate, estimate, estimate, sums.size, confidence), p_value, n_resamples)
    result = stats.bootstrap(
        (sums, counts),
        _sum_ratio,
        n_resamples=n_resamples,
        batch=max(1, 4_000_000 // sums.size),
        vectorized=True,
        paired=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    means = result.bootstrap_distribution
    ci = result.confidence_interval
    return BootstrapTest(Interval(estimate, float(ci.low), float(ci.high), sums.size, confidence), _bootstrap_p_value(means), means.size)


def ks_difference(first, second, *, paired: bool, max_samples: int | None, n_resamples: int, confidence: float, seed: int) -> KSDifferenceTest:
    """KS(first) - KS(second) for two pairs of samples, ``first = (a1, b1)`` and ``second = (a2, b2)``, with a
    bootstrap interval and p-value (``scipy.stats.bootstrap`` over ``scipy.stats.ks_2samp`` statistics, :func:`ks_statistic`).

    ``paired``: the four samples are aligned element by element (the same weights of three models, or the
    same (position, unit) outputs), so elements are resampled jointly; otherwise each sample is resampled
    on its own. Samples above ``max_samples`` are first subsampled (jointly when paired), seeded.
    """
    _check_confidence(confidence)
    _check_max_samples(max_samples)
    _check_resamples(n_resamples)
    samples = [_sample(x, name) for x, name in zip((*first, *second), ("a1", "b1", "a2", "b2"))]
    rng = np.random.default_rng(seed)
    if paired:
        if len({x.size for x in samples}) != 1:
            raise DataError(f"paired samples must have one length, got {[x.size for x in samples]}")
        if max_samples is not None and samples[0].size > max_samples:
            keep = rng.choice(samples[0].size, size=max_samples, replace=False)
            samples = [x[keep] for x in samples]
    else:
        samples = [_subsample(x, max_samples, rng) for x in samples]

    def difference(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> float:
        return ks_statistic(a1, b1) - ks_statistic(a2, b2)

    first_statistic, second_statistic = ks_statistic(samples[0], samples[1]), ks_statistic(samples[2], samples[3])
    estimate = first_statistic - second_statistic
    result = stats.bootstrap(
        samples, difference, n_resamples=n_resamples, vectorized=False, paired=paired, confidence_level=confidence, method="percentile", rng=rng
    )
    values = result.bootstrap_distribution
    ci = result.confidence_interval
    return KSDifferenceTest(
        Interval(estimate, float(ci.low), float(ci.high), samples[0].size, confidence),
        _bootstrap_p_value(values),
        values.size,
        first_statistic,
        second_statistic,
    )


def combine_p_values(p_values: Sequence[float], method: CombineMethod = "fisher") -> CombinedTest:
    """Independent p-values (e.g. one paired test per seed) combined by ``scipy.stats.combine_pvalues``."""
    if method not in get_args(CombineMethod):
        raise ParamError(f"method: unknown p-value combination {method!r}; expected one of {', '.join(get_args(CombineMethod))}")
    p = _sample(p_values, "p_values")
    if ((p < 0.0) | (p > 1.0)).any():
        raise DataError(f"p_values: every p-value must lie in [0, 1], got {p[(p < 0.0) | (p > 1.0)][:3].tolist()}")
    result = stats.combine_pvalues(p, method=method)
    return CombinedTest(method, float(result.statistic), float(result.pvalue), p.size)


def verdict(estimate: Interval, p_value: float, expected_sign: int, alpha: float = 0.05) -> Verdict:
    """The findings report's verdict on one claim of the paper; :data:`VERDICT_RULE` states it in words.

    ``expected_sign``: +1 when the paper claims a positive difference, -1 a negative one. ``estimate`` without
    an interval (NaN bounds: a single seed) is judged on the sign of its mean.
    """
    if expected_sign not in (1, -1):
        raise ParamError(f"expected_sign: expected +1 or -1, got {expected_sign!r}")
    if not 0.0 < alpha < 1.0:
        raise ParamError(f"alpha: expected a level strictly between 0 and 1, got {alpha!r}")
    if not 0.0 <= p_value <= 1.0:
        raise DataError(f"p_value: expected a p-value in [0, 1], got {p_value!r}")
    if math.isnan(estimate.mean):
        raise DataError("estimate: the estimated difference is NaN")
    if math.isnan(estimate.low) or math.isnan(estimate.high):
        side = int(np.sign(estimate.mean))
    else:
        side = 1 if estimate.low > 0.0 else -1 if estimate.high < 0.0 else 0
    if p_value >= alpha or side == 0:
        return "inconclusive"
    return "reproduced" if side == expected_sign else "contradicted"
