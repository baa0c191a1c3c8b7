"""scripts/stage_times.py: wall time per stage from output modification times, grouped by stage type, kind and tree.

A small project of the study's layout (the root lock, a family's lock under pipelines/ holding main-tree and
tree stages, a tree's own lock under variants/) with outputs whose modification times are set by hand.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import stage_times  # noqa: E402

START = dt.datetime(2026, 12, 3, 10, 0, 0)


def write_lock(root: Path, lock: str, stages: dict[str, tuple[str, list[tuple[str, float]]]]) -> None:
    """``stages``: name -> (command, [(output path, seconds after START it was written)])."""
    entries = {}
    for name, (command, outs) in stages.items():
        entries[name] = {"cmd": command, "outs": [{"path": path, "md5": "0" * 32} for path, _ in outs]}
        for path, seconds in outs:
            out = root / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(name, encoding="utf-8")
            when = (START + dt.timedelta(seconds=seconds)).timestamp()
            os.utime(out, (when, when))
    (root / lock).parent.mkdir(parents=True, exist_ok=True)
    (root / lock).write_text(yaml.safe_dump({"schema": "2.0", "stages": entries}), encoding="utf-8")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    write_lock(
        tmp_path,
        "dvc.lock",
        {
            "download@ag_news": ("python stages/download.py ag_news", [("data/raw/ag_news/a.csv", -50.0)]),  # before the repro
            "train@ag_news-discriminative": ("python stages/train.py ag_news discriminative", [("models/float/d/model.pt", 60.0)]),
            "tokenize@ag_news": ("python stages/tokenize_data.py ag_news", [("data/tokenized/ag_news/v.json", 10.0)]),
        },
    )
    write_lock(
        tmp_path,
        "pipelines/calibrate-ag_news-discriminative/dvc.lock",
        {
            "calibrate@ag_news-discriminative-4-class_conditional": (
                "python stages/calibrate.py ag_news discriminative 4 class_conditional",
                # a directory output: its newest file counts
                [("models/calibrated/w4/model.pt", 70.0), ("models/calibrated/w4/ranges.json", 75.0)],
            ),
        },
    )
    write_lock(
        tmp_path,
        "pipelines/seed_2026_calibrate-ag_news-discriminative/dvc.lock",
        {
            "seed_2026_calibrate@ag_news-discriminative-4-class_conditional": (
                "python stages/calibrate.py ag_news discriminative 4 class_conditional --tree seed_2026",
                [("variants/seed_2026/models/calibrated/w4/model.pt", 95.0)],
            ),
        },
    )
    write_lock(
        tmp_path,
        "variants/seed_2026/dvc.lock",
        {
            "seed_2026_train@ag_news-discriminative": (
                "python stages/train.py ag_news discriminative --tree seed_2026",
                [("variants/seed_2026/models/float/d/model.pt", 85.0)],
            )
        },
    )
    return tmp_path


def test_stages_are_timed_from_the_previous_end_and_grouped_by_kind_and_tree(project: Path) -> None:
    timed = stage_times.durations(stage_times.stage_ends(project), START.timestamp())
    got = {stage.name: (stage.kind, stage.tree, round(seconds, 3)) for stage, seconds in timed}
    assert got == {
        "tokenize@ag_news": ("tokenize_data", "main", 10.0),
        "train@ag_news-discriminative": ("train", "main", 50.0),
        "calibrate@ag_news-discriminative-4-class_conditional": ("calibrate", "main", 15.0),
        "seed_2026_train@ag_news-discriminative": ("train", "seed_2026", 10.0),
        "seed_2026_calibrate@ag_news-discriminative-4-class_conditional": ("calibrate", "seed_2026", 10.0),
    }


def test_the_script_prints_the_three_tables(project: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stage_times.py"), "--root", str(project), "--since", START.isoformat(sep=" ")],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert lines[0] == f"5 stages, 1.6 min from {START.isoformat(sep=' ')} to the last output"
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[1:] if line.strip()}
    assert rows[("train", "1")] == ["0.8", "50.0", "50.0"]
    assert rows[("seed_2026_calibrate", "1")] == ["0.2", "10.0", "10.0"]
    # per kind over both trees: train 50 + 10 s, calibrate 15 + 10 s
    assert rows[("train", "2")] == ["1.0", "50.0", "50.0"]
    assert rows[("calibrate", "2")] == ["0.4", "15.0", "15.0"]
    # per tree
    assert rows[("main", "3")] == ["1.2", "15.0", "50.0"]
    assert rows[("seed_2026", "2")] == ["0.3", "10.0", "10.0"]


def test_a_start_after_every_output_is_an_error_that_names_it(project: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stage_times.py"), "--root", str(project), "--since", "2027-01-01 00:00:00"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "--since '2027-01-01 00:00:00': no stage" in run.stderr


def test_a_top_below_one_is_an_error_that_names_it(project: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "stage_times.py"), "--root", str(project), "--since", START.isoformat(sep=" "), "--top", "0"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "--top 0: expected a positive number" in run.stderr
