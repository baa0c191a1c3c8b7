"""The findings report's comparisons and verdict rules on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lstm_ptq import findings as F
from lstm_ptq.stats import Interval


def _correct(n: int, accuracy: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=round(accuracy * n), replace=False)] = True
    return out


def test_accuracy_difference_is_judged_by_mcnemar() -> None:
    a = np.ones(400, dtype=bool)
    b = a.copy()
    b[:40] = False  # B misses 40 documents A gets right, and gets none A misses
    j = F.accuracy_difference("C", "d", "float", "q", a, b, seed=0)
    assert j.estimate.mean == pytest.approx(0.10) and j.estimate.low > 0.0
    assert j.test.startswith("McNemar exact (40 vs 0 discordant of 400)") and j.p_value == pytest.approx(2 * 0.5**40)
    assert j.verdict == "reproduced"
    reverse = F.accuracy_difference("C", "d", "float", "q", b, a, seed=0)
    assert reverse.verdict == "contradicted"
    same = F.accuracy_difference("C", "d", "float", "q", a, a, seed=0)
    assert same.p_value == 1.0 and same.verdict == "inconclusive"


def test_drop_difference_and_margin_on_constructed_drops() -> None:
    n = 2000
    float_a, quant_a = np.ones(n, dtype=bool), _correct(n, 0.80, 1)  # A drops 20 points
    float_b, quant_b = np.ones(n, dtype=bool), _correct(n, 0.98, 2)  # B drops 2 points
    j = F.drop_difference("C", "d", "3-bit", "q", (float_a, quant_a), (float_b, quant_b), seed=0)
    assert j.estimate.mean == pytest.approx(0.18) and j.verdict == "reproduced" and j.test.startswith("document bootstrap")
    small = F.drop_below("C", "d", "4-bit", "q", float_b, quant_b, margin=0.04, seed=0)
    assert small.estimate.mean == pytest.approx(0.02) and small.verdict == "reproduced"
    large = F.drop_below("C", "d", "4-bit", "q", float_a, quant_a, margin=0.04, seed=0)
    assert large.estimate.mean == pytest.approx(-0.16) and large.verdict == "contradicted"


def test_precomputed_and_interval_ordering() -> None:
    row = {"difference": 0.05, "low": 0.01, "high": 0.09, "p_value": 0.002, "n": 20000}
    assert F.precomputed("C", "d", "s", "q", row, "t").verdict == "reproduced"
    assert F.precomputed("C", "d", "s", "q", row, "t", sign=-1).verdict == "contradicted"
    assert F.precomputed("C", "d", "s", "q", {**row, "low": -0.01, "p_value": 0.2}, "t").verdict == "inconclusive"
    wide, narrow = Interval(0.3, 0.25, 0.35, 1, 0.95), Interval(0.1, 0.05, 0.15, 1, 0.95)
    assert F.interval_ordering("C", "d", "s", "q", wide, narrow).verdict == "reproduced"
    assert F.interval_ordering("C", "d", "s", "q", narrow, wide).verdict == "contradicted"
    overlap = F.interval_ordering("C", "d", "s", "q", Interval(0.2, 0.1, 0.3, 1, 0.95), narrow)
    assert overlap.verdict == "inconclusive" and math.isnan(overlap.p_value)


@pytest.mark.parametrize(
    ("verdicts", "several", "expected"),
    [
        (["reproduced", "reproduced"], False, "reproduced"),
        (["reproduced", "inconclusive"], False, "partly reproduced"),
        (["reproduced", "contradicted"], False, "partly reproduced"),
        (["contradicted", "inconclusive"], False, "contradicted"),
        (["inconclusive"], False, "inconclusive"),
        ([], False, "inconclusive"),
        (["reproduced", "reproduced", "contradicted"], True, "reproduced"),
        (["reproduced", "inconclusive"], True, "inconclusive"),
        (["contradicted", "inconclusive"], True, "contradicted"),
    ],
)
def test_overall_rule(verdicts: list[str], several: bool, expected: str) -> None:
    assert F.overall(verdicts, several=several) == expected


def test_judgement_formats_points_and_raw_values() -> None:
    j = F.Judgement("C", "d", "s", "q", Interval(0.0123, 0.001, 0.02, 10, 0.95), "t", 0.01, "reproduced")
    assert j.formatted() == ("+1.23", "[+0.10, +2.00]")
    raw = F.Judgement("C", "d", "s", "q", Interval(0.0123, math.nan, math.nan, 0, 0.95), "t", math.nan, "inconclusive", "raw")
    assert raw.formatted() == ("+0.012", "n/a")
