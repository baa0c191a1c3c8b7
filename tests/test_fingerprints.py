"""A stage's fingerprint changes exactly when its script or a package module it imports changes."""

from __future__ import annotations

import shutil
from pathlib import Path

from lstm_ptq.fingerprints import fingerprint, imported_sources, stage_code

REPO = Path(__file__).resolve().parents[1]


def copy_code(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("src", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return root


def test_fingerprints_move_with_the_code_each_stage_imports(tmp_path: Path) -> None:
    root = copy_code(tmp_path)
    scripts = ("stages/calibrate.py", "stages/ptq_report.py", "stages/download.py")
    before = {s: fingerprint(root, s) for s in scripts}
    assert before == {s: fingerprint(REPO, s) for s in scripts}  # content, not location

    plots = root / "src/lstm_ptq/plots.py"
    plots.write_text(plots.read_text() + "\n# a figure changed\n")
    after = {s: fingerprint(root, s) for s in scripts}
    assert after["stages/ptq_report.py"] != before["stages/ptq_report.py"]
    assert after["stages/calibrate.py"] == before["stages/calibrate.py"] and after["stages/download.py"] == before["stages/download.py"]

    refine = root / "src/lstm_ptq/quantization/refine.py"
    refine.write_text(refine.read_text() + "\n# GPFQ changed\n")
    assert fingerprint(root, "stages/calibrate.py") != before["stages/calibrate.py"]
    assert fingerprint(root, "stages/download.py") == before["stages/download.py"]


def test_lazy_imports_error_plumbing_and_the_warm_runner_are_not_part_of_a_stage_s_code() -> None:
    code = stage_code(REPO, "stages/download.py")
    assert "src/lstm_ptq/settings.py" in code and "stages/download.py" in code
    assert not any(f.startswith("src/lstm_ptq/quantization/") for f in code)  # settings imports it lazily, to validate
    assert "src/lstm_ptq/errors.py" not in code and "src/lstm_ptq/cli.py" not in code
    assert "src/lstm_ptq/warm.py" not in code and "src/lstm_ptq/warm.py" in imported_sources(REPO, "stages/download.py")
