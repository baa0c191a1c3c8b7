"""Statistics of the findings report (section 6, Figure 15): each against a value known in closed form."""

import math

import numpy as np
import pytest
from scipy import stats

from lstm_ptq import stats as S
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.stats import (
    VERDICT_RULE,
    Interval,
    PairedTest,
    combine_p_values,
    kde_curve,
    ks_two_sample,
    mcnemar_test,
    mean_interval,
    paired_bootstrap_accuracy_difference,
    verdict,
)

SEED = 2025


def paired_documents(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness vectors of classifiers A and B with the given contingency table, in a shuffled order."""
    a = np.repeat([True, True, False, False], [both, only_a, only_b, neither])
    b = np.repeat([True, False, True, False], [both, only_a, only_b, neither])
    order = np.random.default_rng(SEED).permutation(a.size)
    return a[order], b[order]


def test_identical_samples_have_ks_zero_and_p_one():
    x = np.random.default_rng(SEED).normal(size=300)
    result = ks_two_sample(x, x.copy(), max_samples=None, seed=SEED)
    assert (result.ks_statistic, result.p_value) == (0.0, 1.0)
    assert (result.n_a, result.n_b, result.n_a_total, result.n_b_total) == (300, 300, 300, 300)


def test_two_point_masses_have_ks_one():
    result = ks_two_sample(np.zeros(40), np.ones((5, 6)), max_samples=None, seed=SEED)
    assert result.ks_statistic == 1.0
    assert result.p_value < 1e-10
    assert (result.n_a, result.n_b) == (40, 30)


def test_shifted_normals_give_the_analytic_ks_statistic():
    # sup_x |Phi(x) - Phi(x - 0.5)| is reached at x = 0.25: D = 2 Phi(0.25) - 1.
    expected = 2.0 * stats.norm.cdf(0.25) - 1.0
    assert expected == pytest.approx(0.19741, abs=1e-5)
    rng = np.random.default_rng(SEED)
    n = 200_000
    result = ks_two_sample(rng.normal(0.0, 1.0, n), rng.normal(0.5, 1.0, n), max_samples=None, seed=SEED)
    # |D_nm - D| <= sup|F_n - F| + sup|G_n - G|; by the DKW inequality each exceeds 0.005 with
    # probability <= 2 exp(-2 n 0.005^2) = 2 exp(-10) < 1e-4, so 0.01 fails only if the statistic is wrong.
    assert result.ks_statistic == pytest.approx(expected, abs=0.01)
    assert result.p_value < 1e-100


def test_subsampling_respects_max_samples_reports_totals_and_is_deterministic():
    rng = np.random.default_rng(SEED)
    a, b = rng.normal(0.0, 1.0, 50_000), rng.normal(0.5, 1.0, 800)
    result = ks_two_sample(a, b, max_samples=1_000, seed=7)
    assert (result.n_a, result.n_b, result.n_a_total, result.n_b_total) == (1_000, 800, 50_000, 800)
    assert ks_two_sample(a, b, max_samples=1_000, seed=7) == result
    other_seed = ks_two_sample(a, b, max_samples=1_000, seed=8)
    assert other_seed.ks_statistic != result.ks_statistic
    # Without replacement, 999 of 1,000 distinct values leave out one: two such subsets differ by at most
    # 1/999 in their ECDFs; with replacement a third of the values would be missing and D would be ~0.03.
    distinct = np.arange(1_000, dtype=float)
    assert ks_two_sample(distinct, distinct, max_samples=999, seed=7).ks_statistic <= 1.0 / 999 + 1e-12
    both = ks_two_sample(a, a[::-1], max_samples=999, seed=7)
    assert (both.n_a, both.n_b, both.n_a_total, both.n_b_total) == (999, 999, 50_000, 50_000)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([], [1.0, 2.0], "a: empty sample"),
        ([1.0, 2.0], [1.0, np.nan, np.inf], "b: 2 of 3 values are not finite"),
        (["x", "y"], [1.0], "a: not an array of numbers"),
    ],
)
def test_ks_rejects_bad_samples_by_name(a, b, message):
    with pytest.raises(DataError, match=message):
        ks_two_sample(a, b, max_samples=None, seed=SEED)


def test_ks_rejects_a_bad_max_samples():
    with pytest.raises(ParamError, match="max_samples"):
        ks_two_sample([1.0, 2.0], [1.0, 3.0], max_samples=0, seed=SEED)


@pytest.mark.parametrize(
    "sizes, ties",
    [
        ((50, 50), False),
        ((37, 91), False),
        ((37, 91), True),
        ((10_000, 9_999), False),
        ((10_000, 10_000), True),
        ((10_001, 300), False),
        ((20_000, 20_000), False),
    ],
)
def test_ks_statistic_is_ks_2samps_statistic_bit_for_bit(sizes, ties):
    """The bootstrap's statistic without the p-value: equal to scipy's, where scipy rounds D (exact
    regime, up to 10,000 values per sample) and where it does not (asymptotic), ties included."""
    rng = np.random.default_rng(sum(sizes))
    for shift in (0.0, 0.05, 0.3, 2.0):
        a, b = rng.normal(0.0, 1.0, sizes[0]), rng.normal(shift, 1.3, sizes[1])
        if ties:
            a, b = np.round(a, 1), np.round(b, 1)
        ours, theirs = S.ks_statistic(a, b), float(stats.ks_2samp(a, b).statistic)
        assert ours == theirs, (sizes, ties, shift, ours, theirs)
        assert S.ks_statistic(b, a) == float(stats.ks_2samp(b, a).statistic)


def test_kde_of_two_points_is_their_gaussian_mixture_with_scotts_bandwidth():
    x, density = kde_curve([0.0, 1.0], 101, max_samples=None, seed=SEED)
    # Scott's factor n^(-1/5), times the sample standard deviation sqrt(1/2).
    h = 2.0**-0.2 * math.sqrt(0.5)
    np.testing.assert_allclose(x, np.linspace(-3.0 * h, 1.0 + 3.0 * h, 101))
    np.testing.assert_allclose(density, 0.5 * (stats.norm.pdf(x, 0.0, h) + stats.norm.pdf(x, 1.0, h)), rtol=1e-12)


def test_kde_of_a_large_sample_integrates_to_one_over_its_grid():
    values = np.random.default_rng(SEED).exponential(size=100_000)
    x, density = kde_curve(values, 512, max_samples=5_000, seed=SEED)
    assert x.shape == density.shape == (512,)
    # At most 0.135% of each kernel's mass lies beyond 3 bandwidths on either side.
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=3e-3)
    assert kde_curve(values, 512, max_samples=5_000, seed=SEED)[1] == pytest.approx(density, abs=0.0)


def test_kde_of_a_constant_sample_is_an_error():
    with pytest.raises(DataError, match="at least two distinct values; all 20 values equal 3.5"):
        kde_curve(np.full(20, 3.5), 64, max_samples=None, seed=SEED)
    with pytest.raises(ParamError, match="grid_points"):
        kde_curve([0.0, 1.0], 1, max_samples=None, seed=SEED)


def test_mean_interval_is_the_student_t_interval():
    # [1, 2, 3]: mean 2, s = 1; t_{0.975, 2} from the t(2) CDF 1/2 + t / (2 sqrt(2 + t^2)) = 0.975.
    t = math.sqrt(2.0 * 0.95**2 / (1.0 - 0.95**2))
    assert t == pytest.approx(4.3027, abs=1e-4)
    interval = mean_interval([1.0, 2.0, 3.0])
    half = t * 1.0 / math.sqrt(3.0)
    assert interval == Interval(2.0, pytest.approx(2.0 - half, rel=1e-12), pytest.approx(2.0 + half, rel=1e-12), 3, 0.95)


def test_mean_interval_of_one_seed_has_nan_bounds_and_equal_values_a_point():
    one = mean_interval([0.7])
    assert (one.mean, one.n) == (0.7, 1)
    assert math.isnan(one.low) and math.isnan(one.high)
    assert mean_interval([0.25, 0.25, 0.25], confidence=0.9) == Interval(0.25, 0.25, 0.25, 3, 0.9)
    with pytest.raises(DataError, match="values: empty sample"):
        mean_interval([])
    with pytest.raises(ParamError, match="confidence"):
        mean_interval([1.0, 2.0], confidence=95)


def test_mcnemar_on_a_known_table_gives_the_exact_binomial_p_value():
    a, b = paired_documents(both=30, only_a=10, only_b=2, neither=8)
    result = mcnemar_test(a, b)
    # Two-sided exact: 2 P(X <= 2), X ~ Binomial(12, 1/2).
    expected = 2.0 * sum(math.comb(12, k) for k in range(3)) / 2**12
    assert expected == pytest.approx(0.0385742, abs=1e-7)
    assert (result.b, result.c, result.n) == (10, 2, 50)
    assert result.accuracy_difference == pytest.approx(0.16, abs=1e-15)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    swapped = mcnemar_test(b, a.astype(int))
    assert (swapped.b, swapped.c, swapped.p_value) == (2, 10, result.p_value)
    assert swapped.accuracy_difference == pytest.approx(-0.16)


def test_mcnemar_without_discordant_documents_has_p_one():
    a, b = paired_documents(both=20, only_a=0, only_b=0, neither=5)
    assert mcnemar_test(a, b) == mcnemar_test(a, a) == PairedTest(0, 0, 25, 0.0, 1.0)


@pytest.mark.parametrize(
    ("correct_a", "correct_b", "message"),
    [
        ([True, False], [True], "same documents: 2 != 1"),
        ([], [], "correct_a: no documents"),
        ([1, 0], [1, 2], "correct_b: per-document correctness must be booleans or 0/1"),
    ],
)
def test_paired_tests_reject_bad_correctness(correct_a, correct_b, message):
    with pytest.raises(DataError, match=message):
        mcnemar_test(correct_a, correct_b)
    with pytest.raises(DataError, match=message):
        paired_bootstrap_accuracy_difference(correct_a, correct_b, n_resamples=10, confidence=0.95, seed=SEED)


def test_bootstrap_of_identical_classifiers_is_exactly_zero():
    a, _ = paired_documents(both=0, only_a=70, only_b=0, neither=30)
    assert paired_bootstrap_accuracy_difference(a, a.copy(), n_resamples=500, confidence=0.95, seed=SEED) == Interval(0.0, 0.0, 0.0, 100, 0.95)


def test_bootstrap_interval_is_paired_and_covers_the_true_difference():
    # Population: both right 78%, only A 12%, only B 2%, neither 8%: acc_A - acc_B = 0.10, and the
    # per-document difference has variance 0.12 + 0.02 - 0.10^2 = 0.13 (unpaired it would be 0.09 + 0.16 = 0.25).
    n = 4_000
    category = np.random.default_rng(SEED).choice(4, size=n, p=[0.78, 0.12, 0.02, 0.08])
    a, b = np.isin(category, (0, 1)), np.isin(category, (0, 2))
    result = paired_bootstrap_accuracy_difference(a, b, n_resamples=2_000, confidence=0.95, seed=SEED)
    assert (result.mean, result.n, result.confidence) == (pytest.approx(a.mean() - b.mean(), abs=1e-15), n, 0.95)
    assert result.low < 0.10 < result.high
    assert result.low > 0.0
    paired_width = 2.0 * stats.norm.ppf(0.975) * math.sqrt(0.13 / n)
    assert result.high - result.low == pytest.approx(paired_width, rel=0.1)
    assert paired_bootstrap_accuracy_difference(a, b, n_resamples=2_000, confidence=0.95, seed=SEED) == result


def test_fisher_combination_matches_its_closed_form():
    # Fisher's statistic for k = 2 is chi^2 with 4 df: p = P (1 - ln P) with P the product of the p-values.
    combined = combine_p_values([0.05, 0.05])
    assert (combined.method, combined.n) == ("fisher", 2)
    assert combined.statistic == pytest.approx(-4.0 * math.log(0.05), rel=1e-12)
    assert combined.p_value == pytest.approx(0.0025 * (1.0 - math.log(0.0025)), rel=1e-12)
    assert combine_p_values([0.3]).p_value == pytest.approx(0.3, rel=1e-12)
    assert combine_p_values([0.01, 0.2, 0.5], method="tippett").p_value == pytest.approx(1.0 - 0.99**3, rel=1e-12)


def test_combination_rejects_bad_p_values_and_methods():
    with pytest.raises(DataError, match=r"p_values: every p-value must lie in \[0, 1\], got \[1.5\]"):
        combine_p_values([0.2, 1.5])
    with pytest.raises(DataError, match="p_values: empty sample"):
        combine_p_values([])
    with pytest.raises(ParamError, match="unknown p-value combination 'fischer'"):
        combine_p_values([0.2], method="fischer")


NAN = math.nan


@pytest.mark.parametrize(
    ("estimate", "p_value", "expected_sign", "expected"),
    [
        (Interval(0.03, 0.01, 0.05, 5, 0.95), 0.001, 1, "reproduced"),
        (Interval(-0.03, -0.05, -0.01, 5, 0.95), 0.001, -1, "reproduced"),
        (Interval(-0.03, -0.05, -0.01, 5, 0.95), 0.001, 1, "contradicted"),
        (Interval(0.03, 0.01, 0.05, 5, 0.95), 0.2, 1, "inconclusive"),
        (Interval(0.03, 0.01, 0.05, 5, 0.95), 0.05, 1, "inconclusive"),
        (Interval(0.03, -0.01, 0.07, 5, 0.95), 0.001, 1, "inconclusive"),
        (Interval(0.03, 0.0, 0.06, 5, 0.95), 0.001, 1, "inconclusive"),
        (Interval(0.03, NAN, NAN, 1, 0.95), 0.001, 1, "reproduced"),
        (Interval(0.03, NAN, NAN, 1, 0.95), 0.001, -1, "contradicted"),
        (Interval(0.03, NAN, NAN, 1, 0.95), 0.3, 1, "inconclusive"),
        (Interval(0.0, NAN, NAN, 1, 0.95), 0.001, 1, "inconclusive"),
    ],
)
def test_verdict_follows_its_rule(estimate, p_value, expected_sign, expected):
    assert verdict(estimate, p_value, expected_sign) == expected


def test_verdict_rule_names_its_outcomes_and_bad_arguments_are_errors():
    for word in ("reproduced", "contradicted", "inconclusive", "alpha", "single seed", "sign"):
        assert word in VERDICT_RULE
    interval = Interval(0.03, 0.01, 0.05, 5, 0.95)
    with pytest.raises(ParamError, match="expected_sign"):
        verdict(interval, 0.01, 0)
    with pytest.raises(DataError, match="p_value"):
        verdict(interval, NAN, 1)
    with pytest.raises(ParamError, match="alpha"):
        verdict(interval, 0.01, 1, alpha=5)


# --- bootstrap_mean ------------------------------------------------------------------------------------------


def test_bootstrap_mean_of_per_document_differences_matches_the_accuracy_difference() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.80
    b = rng.random(2000) < 0.75
    test = S.bootstrap_mean(a.astype(float) - b.astype(float), n_resamples=2000, confidence=0.95, seed=1)
    assert test.estimate.mean == pytest.approx(a.mean() - b.mean())
    reference = S.paired_bootstrap_accuracy_difference(a, b, n_resamples=2000, confidence=0.95, seed=1)
    assert test.estimate.low == pytest.approx(reference.low, abs=0.006) and test.estimate.high == pytest.approx(reference.high, abs=0.006)
    assert test.estimate.low < test.estimate.mean < test.estimate.high
    assert test.p_value < 0.01  # a 5-point difference on 2,000 documents


def test_bootstrap_mean_p_value_is_large_without_a_difference_and_never_zero() -> None:
    rng = np.random.default_rng(3)
    null = S.bootstrap_mean(rng.normal(0.0, 1.0, 500), n_resamples=999, confidence=0.95, seed=0)
    assert null.p_value > 0.05 and null.estimate.low < 0.0 < null.estimate.high
    strong = S.bootstrap_mean(rng.normal(5.0, 1.0, 500), n_resamples=999, confidence=0.95, seed=0)
    assert strong.p_value == pytest.approx(2 / 1000)  # every resample above zero: 2 (1 + 0) / (1 + 999)


def test_bootstrap_mean_of_identical_units_is_a_point_interval() -> None:
    zero = S.bootstrap_mean(np.zeros(10), n_resamples=99, confidence=0.95, seed=0)
    assert (zero.estimate.low, zero.estimate.high, zero.p_value) == (0.0, 0.0, 1.0)
    one = S.bootstrap_mean(np.ones(10), n_resamples=99, confidence=0.95, seed=0)
    assert (one.estimate.low, one.estimate.high, one.p_value) == (1.0, 1.0, 0.02)


def test_cluster_bootstrap_is_wider_than_treating_correlated_values_as_independent() -> None:
    """Tokens of one document share its shift: resampling documents, not tokens, gives the honest interval."""
    rng = np.random.default_rng(5)
    shifts = rng.normal(0.0, 1.0, 100)
    groups = np.repeat(np.arange(100), 50)
    values = shifts[groups] + rng.normal(0.0, 0.1, groups.size)
    clustered = S.bootstrap_mean(values, groups=groups, n_resamples=999, confidence=0.95, seed=0)
    flat = S.bootstrap_mean(values, n_resamples=999, confidence=0.95, seed=0)
    assert clustered.estimate.mean == pytest.approx(flat.estimate.mean)
    width = lambda t: t.estimate.high - t.estimate.low  # noqa: E731
    assert width(clustered) > 4 * width(flat)
    assert clustered.estimate.n == 100 and flat.estimate.n == 5000


def test_bootstrap_mean_refuses_mismatched_groups_and_bad_settings() -> None:
    with pytest.raises(DataError, match="groups: 3 group ids for 4 values"):
        S.bootstrap_mean(np.zeros(4), groups=[0, 0, 1], n_resamples=9, confidence=0.95, seed=0)
    with pytest.raises(ParamError, match="n_resamples"):
        S.bootstrap_mean(np.zeros(4), n_resamples=0, confidence=0.95, seed=0)


# --- ks_difference -------------------------------------------------------------------------------------------


def test_ks_difference_of_paired_shifts_finds_the_larger_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, 3000)
    small, large = reference + 0.1, reference + 0.5  # the same elements, shifted: KS = Phi-difference of each shift
    test = S.ks_difference((large, reference), (small, reference), paired=True, max_samples=None, n_resamples=200, confidence=0.95, seed=1)
    expected = stats.ks_2samp(large, reference).statistic - stats.ks_2samp(small, reference).statistic
    assert test.estimate.mean == pytest.approx(expected) and test.estimate.low > 0.1 and test.p_value < 0.02
    assert test.first_statistic == stats.ks_2samp(large, reference).statistic
    assert test.second_statistic == stats.ks_2samp(small, reference).statistic
    same = S.ks_difference((small, reference), (small, reference), paired=True, max_samples=None, n_resamples=50, confidence=0.95, seed=1)
    assert same.estimate.mean == 0.0 and same.p_value == 1.0


def test_ks_difference_unpaired_and_subsampled() -> None:
    rng = np.random.default_rng(2)
    first = (rng.normal(0.3, 1.0, 5000), rng.normal(0.0, 1.0, 4000))
    second = (rng.normal(0.0, 1.0, 3000), rng.normal(0.0, 1.0, 2000))
    test = S.ks_difference(first, second, paired=False, max_samples=1000, n_resamples=200, confidence=0.95, seed=0)
    assert test.estimate.n == 1000 and test.estimate.low < test.estimate.mean < test.estimate.high
    assert test.estimate.mean > 0.0
    # the two statistics it reports are those of the 1,000-value samples it compared, not of the full samples
    assert test.first_statistic - test.second_statistic == pytest.approx(test.estimate.mean)
    assert test.second_statistic != pytest.approx(stats.ks_2samp(*second).statistic)
    assert test.second_statistic > stats.ks_2samp(*second).statistic  # no shift: the smaller sample's KS is larger
    with pytest.raises(DataError, match="one length"):
        S.ks_difference(first, second, paired=True, max_samples=None, n_resamples=10, confidence=0.95, seed=0)


def test_wilson_interval_known_answers():
    # 0 of 10: [0, z^2 / (n + z^2)]; 50 of 100: 0.5 +- z sqrt(n/4 + z^2/4) / (n + z^2)
    z = stats.norm.ppf(0.975)
    assert S.wilson_interval(0.0, 10) == pytest.approx((0.0, z**2 / (10 + z**2)), abs=1e-12)
    half = z * math.sqrt(100 / 4 + z**2 / 4) / (100 + z**2)
    assert S.wilson_interval(0.5, 100) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    low, high = S.wilson_interval(0.885395, 7600)  # rounded to 6729 of 7600
    assert low < 6729 / 7600 < high and high - low == pytest.approx(2 * z * math.sqrt(0.8854 * 0.1146 / 7600), rel=0.01)


@pytest.mark.parametrize(("accuracy", "documents"), [(1.2, 10), (-0.1, 10), (0.5, 0), (0.5, 2.5), (0.5, True)])
def test_wilson_interval_rejects_bad_inputs(accuracy, documents):
    with pytest.raises(DataError):
        S.wilson_interval(accuracy, documents)
