"""Aggregate reports: the paper's Table 1 regenerated beside the paper's own values."""

from __future__ import annotations

from pathlib import Path

from .artifacts import atomic_write_text, read_json, write_csv
from .paths import ProjectPaths

# Paper Table 1: test accuracy (%) of the full-precision classifiers.
PAPER_TABLE1 = {
    ("ag_news", "generative"): 88.95,
    ("ag_news", "discriminative"): 89.51,
    ("dbpedia", "generative"): 95.93,
    ("dbpedia", "discriminative"): 97.62,
}


def table1_stage(root: Path, datasets: list[str]) -> str:
    """Table 1 beside the paper's values, as CSV and markdown under metrics/."""
    paths = ProjectPaths(root)
    rows = []
    for dataset in datasets:
        for model_type in ("generative", "discriminative"):
            metrics = read_json(paths.evaluate_metrics(dataset, model_type))
            rows.append(
                {
                    "dataset": dataset,
                    "model": model_type,
                    "accuracy_pct": f"{100 * metrics['accuracy']:.2f}",
                    "paper_accuracy_pct": f"{PAPER_TABLE1[(dataset, model_type)]:.2f}",
                    "train_rows": metrics["train_rows"],
                    "test_rows": metrics["documents"],
                }
            )
    write_csv(root / "metrics" / "table1.csv", rows, list(rows[0]))
    lines = [
        "| model | dataset | test accuracy (%) | paper (%) | training rows | test rows |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['model']} | {r['dataset']} | {r['accuracy_pct']} | {r['paper_accuracy_pct']} | {r['train_rows']} | {r['test_rows']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    atomic_write_text(root / "metrics" / "table1.md", text)
    return text
