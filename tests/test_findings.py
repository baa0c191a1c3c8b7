"""The findings report's comparisons and verdict rules on constructed cases with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_ptq import findings as F
from lstm_ptq.artifacts import save_arrays, write_json
from lstm_ptq.evaluation import Evaluation, save_test_scores
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline import findings
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


# --------------------------------------------------------------------------------------------------
# Seeds: per-seed estimates and predictions pooled over seeds
# --------------------------------------------------------------------------------------------------


def test_correctness_pooled_over_seeds_is_judged_by_the_document_bootstrap() -> None:
    rng = np.random.default_rng(3)
    a = [rng.random(400) < 0.8 for _ in range(3)]
    b = [rng.random(400) < 0.6 for _ in range(3)]
    pooled_a, pooled_b = np.mean(a, axis=0), np.mean(b, axis=0)
    judged = F.accuracy_difference("C", "d", "4-bit", "q", pooled_a, pooled_b, 0)
    assert judged.test.startswith("document bootstrap") and judged.verdict == "reproduced"
    assert judged.estimate.mean == pytest.approx(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
    assert F.accuracy_difference("C", "d", "4-bit", "q", a[0], b[0], 0).test.startswith("McNemar")


def write_tree(root: Path, labels: np.ndarray, predictions: dict[str, np.ndarray]) -> None:
    """A tree's test predictions: the float models' and class-conditional 4-bit cells', as the stages save them."""
    paths = ProjectPaths(root)
    for key, predicted in predictions.items():
        model_type, _, cell = key.partition(":")
        scores = np.eye(2, dtype=np.float32)[predicted]
        evaluation = Evaluation(predicted, labels, np.zeros(len(labels)), scores)
        path = paths.float_test_scores("ag_news", model_type) if not cell else paths.calibrated_test_scores("ag_news", model_type, 4, "class_conditional")
        save_test_scores(path, evaluation)


def test_a_seed_pool_averages_each_documents_correctness_over_the_seed_trees(tmp_path: Path) -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    tokenized = ProjectPaths(tmp_path).tokenized("ag_news")
    save_arrays(tokenized / "test.npz", tokens=np.ones((6, 3), dtype=np.int64), lengths=np.full(6, 3), labels=labels, source_rows=np.arange(6))
    write_json(tokenized / "classes.json", ["World", "Sports"])
    main = {"generative": labels, "generative:cell": 1 - labels}  # float all right, the cell all wrong
    other = {"generative": labels, "generative:cell": labels}  # the other seed's cell all right
    write_tree(tmp_path, labels, main)
    write_tree(tmp_path / "variants" / "seed_b", labels, other)
    seed_b = ProjectPaths(tmp_path / "variants" / "seed_b", data_root=tmp_path)
    members = (
        findings.Context(ProjectPaths(tmp_path), "ag_news", (4,), ("class_conditional",), 1, ("generative",)),
        findings.Context(seed_b, "ag_news", (4,), ("class_conditional",), 2, ("generative",)),
    )
    pool = findings.SeedPool(ProjectPaths(tmp_path), "ag_news", (4,), ("class_conditional",), 1, ("generative",), members=members)
    assert pool.correct("generative").tolist() == [1.0] * 6
    assert pool.correct("generative", 4, "class_conditional").tolist() == [0.5] * 6
    c3 = next(c for c in findings.CLAIMS if c.key == "C3")
    (judged,) = findings._judge(c3, pool)  # margin - drop at 4 bits: SMALL_DROP - 0.5 on every document
    assert judged.estimate.mean == pytest.approx(F.SMALL_DROP - 0.5) and judged.verdict == "contradicted"
    c1 = next(c for c in findings.CLAIMS if c.key == "C1")
    assert findings._judge(c1, pool) == []  # C1 needs both model types; this pool has only the generative one


def test_the_seed_grid_averages_each_cell_over_the_seeds_that_ran_it(tmp_path: Path) -> None:
    """metrics/ptq_grid_seeds.csv: a cell run by the main tree and one seed tree gets their mean accuracy and
    drop with the Student-t interval of two values; a cell only the main tree ran keeps NaN bounds."""
    import pandas as pd

    from lstm_ptq.artifacts import write_json
    from lstm_ptq.paths import ProjectPaths
    from lstm_ptq.pipeline.reports import collect_grid, collect_seed_grid
    from lstm_ptq.pipeline.trees import TreeRun
    from lstm_ptq.stats import mean_interval

    def cell(root: Path, bits: int, accuracy: float) -> None:
        metrics = {"dataset": "dbpedia", "model_type": "generative", "bit_width": bits, "calibration_scheme": "class_conditional"}
        write_json(
            ProjectPaths(root).calibrate_metrics("dbpedia", "generative", bits, "class_conditional"),
            {**metrics, "accuracy": accuracy, "float_accuracy": 0.9, "accuracy_drop": round(0.9 - accuracy, 6), "documents": 1000},
        )

    main, tree_root = tmp_path / "main", tmp_path / "variants/seed_7"
    cell(main, 4, 0.8), cell(main, 3, 0.5), cell(tree_root, 3, 0.7)
    grid = collect_grid(ProjectPaths(main), ["dbpedia"], ["generative"], [4, 3], ["class_conditional"])
    tree = TreeRun("seed_7", ProjectPaths(tree_root), ("dbpedia",), ("generative",), (3,), ("class_conditional",), 7, True, "`seed`: 7")
    seeds = collect_seed_grid(grid, 2025, [tree]).set_index("bit_width")
    assert seeds.loc[4, "seeds"] == 1 and pd.isna(seeds.loc[4, "accuracy_low"]) and seeds.loc[4, "accuracy_mean"] == 0.8
    expected = mean_interval([0.5, 0.7])
    assert seeds.loc[3, "seeds"] == 2 and seeds.loc[3, "per_seed_accuracy"] == "2025:0.500000 7:0.700000"
    assert (seeds.loc[3, "accuracy_low"], seeds.loc[3, "accuracy_mean"], seeds.loc[3, "accuracy_high"]) == pytest.approx(
        (expected.low, 0.6, expected.high), abs=1e-6
    )
    assert seeds.loc[3, "drop_mean"] == pytest.approx(0.3)
    assert grid["accuracy_low"].iloc[0] < 0.8 < grid["accuracy_high"].iloc[0]  # Wilson over the 1,000 documents


def test_the_settings_table_has_one_cell_per_column_and_names_each_trees_training_length(tmp_path: Path) -> None:
    """findings.md's accuracy-by-setting table: the main tree and a setting tree (on the main tree's float
    models, so the main tree's training length), each row as wide as the header."""
    from lstm_ptq.pipeline.findings import Context, _settings_section
    from lstm_ptq.pipeline.trees import TreeRun

    main = ProjectPaths(tmp_path)
    wide = ProjectPaths(tmp_path / "variants/wide", float_root=tmp_path)
    schemes = ("class_conditional", "class_unconditional", "imbalanced_0.5")
    labels = np.arange(14)
    save_arrays(main.tokenized("dbpedia") / "test.npz", tokens=np.ones((14, 3), dtype=np.int64), lengths=np.full(14, 3), labels=labels, source_rows=labels)
    write_json(main.tokenized("dbpedia") / "classes.json", [f"class {c}" for c in labels])
    write_json(main.train_metrics("dbpedia", "generative"), {"epochs_run": 2})
    for paths, accuracy in ((main, 0.5), (wide, 0.7)):
        for scheme in schemes:
            metrics = {"accuracy": accuracy, "float_accuracy": 0.9, "hidden_state": {"abs_c_max": 0.0 if paths is main else 1.5}}
            write_json(paths.calibrate_metrics("dbpedia", "generative", 3, scheme), metrics)
    tree = TreeRun("wide", wide, ("dbpedia",), ("generative",), (3,), schemes, 2025, False, "`quantization.cell_state_bit_width`: 16")
    context = Context(main, "dbpedia", (3,), schemes, 2025, ("generative",))
    rows = [line for line in _settings_section(main, {"dbpedia": context}, [tree]).splitlines() if line.startswith("|")]
    assert rows[0] == "| tree | its settings | model | bits | epochs | float | class_conditional | class_unconditional | imbalanced_0.5 | \\|c\\| max |"
    assert rows[2:] == [
        "| `main` | the main tree | generative | 3 | 2 | 90.00 | 50.00 | 50.00 | 50.00 | 0 |",
        "| `wide` | `quantization.cell_state_bit_width`: 16 | generative | 3 | 2 | 90.00 | 70.00 | 70.00 | 70.00 | 1.5 |",
    ]
    cells = [row.replace("\\|", "").count("|") for row in rows]
    assert len(set(cells)) == 1, rows


def test_a_ks_gaps_table_without_the_gap_statistics_is_an_error_naming_it(tmp_path: Path) -> None:
    """A ks_gaps.csv from before first_ks/second_ks (or cut short) stops the report with the file and the
    missing columns, not a KeyError in a claim."""
    from lstm_ptq.artifacts import write_frame
    from lstm_ptq.errors import DataError
    from lstm_ptq.pipeline.analysis_report import GAP_COLUMNS, ks_gaps_table

    labels = np.array([0, 1, 0, 1])
    tokenized = ProjectPaths(tmp_path).tokenized("ag_news")
    save_arrays(tokenized / "test.npz", tokens=np.ones((4, 3), dtype=np.int64), lengths=np.full(4, 3), labels=labels, source_rows=np.arange(4))
    write_json(tokenized / "classes.json", ["World", "Sports"])
    ctx = findings.Context(ProjectPaths(tmp_path), "ag_news", (4,), ("class_conditional",), 1, ("generative",))
    table = ks_gaps_table(ctx.paths, "ag_news", "generative")
    old = [c for c in GAP_COLUMNS if c not in ("first_ks", "second_ks")]
    write_frame(table, pd.DataFrame([dict.fromkeys(old, 0)], columns=old))
    with pytest.raises(DataError, match=r"ks_gaps\.csv: no column \['first_ks', 'second_ks'\]"):
        ctx.ks_gaps("generative")
    write_frame(table, pd.DataFrame([dict.fromkeys(GAP_COLUMNS, 0)], columns=list(GAP_COLUMNS)))
    assert list(ctx.ks_gaps("generative").columns) == list(GAP_COLUMNS)
