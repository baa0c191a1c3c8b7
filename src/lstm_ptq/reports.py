"""Aggregate reports: the paper's Table 1 values and its markdown rendering beside ours."""

from __future__ import annotations

import pandas as pd

# Paper Table 1: test accuracy (%) of the full-precision classifiers.
PAPER_TABLE1 = {
    ("ag_news", "generative"): 88.95,
    ("ag_news", "discriminative"): 89.51,
    ("dbpedia", "generative"): 95.93,
    ("dbpedia", "discriminative"): 97.62,
}


def table1_markdown(table: pd.DataFrame) -> str:
    """Table 1 (columns of metrics/table1.csv) as a markdown table."""
    lines = [
        "| model | dataset | test accuracy (%) | paper (%) | training rows | test rows |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.dataset} | {r.accuracy_pct} | {r.paper_accuracy_pct} | {r.train_rows} | {r.test_rows} |" for r in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"
