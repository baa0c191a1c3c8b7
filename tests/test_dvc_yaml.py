"""dvc.yaml lists, for every stage, all the package code its script runs: a change to any of it reruns the stage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# Modules that cannot change a stage's outputs: the package marker, exception classes, argv plumbing.
NOT_OUTPUT_AFFECTING = {"src/lstm_ptq/__init__.py", "src/lstm_ptq/errors.py", "src/lstm_ptq/cli.py"}
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def imported_sources(script: str) -> set[str]:
    """Package files a stage script imports (run with --help, which exits after the imports)."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({script!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) if n.startswith('lstm_ptq') and getattr(m, '__file__', None)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    return {Path(line).resolve().relative_to(REPO).as_posix() for line in out.splitlines() if line.endswith(".py")}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_imports(stage: str) -> None:
    definition = STAGES[stage]
    script = definition["cmd"].split()[1]
    deps = {str(d).rstrip("/") for d in definition["deps"]}
    assert script in deps, f"{stage}: its own script {script} is not a dependency"
    imported = imported_sources(script) - NOT_OUTPUT_AFFECTING
    assert imported, f"{script} imports nothing from lstm_ptq"
    missing = sorted(f for f in imported if not any(f == d or f.startswith(d + "/") for d in deps))
    assert not missing, f"dvc.yaml stage {stage!r} does not depend on {missing}"


VARIANT_OF = {"noise_train": "train"} | {
    f"noise_train_{name}": name
    for name in ("evaluate", "noise_float", "calibration_sets", "activation_ranges", "quantize", "calibrate", "noise_quantized")
}


@pytest.mark.parametrize("variant", sorted(VARIANT_OF))
def test_variant_stages_track_the_stage_they_copy(variant: str) -> None:
    """The noise-trained tree's stages run the main stages' scripts with ``--root``: the same script, code
    dependencies and params (model type fixed to generative), so a key added to one is not missed in the other."""
    base, copy = STAGES[VARIANT_OF[variant]], STAGES[variant]
    assert copy["cmd"].split()[:2] == base["cmd"].split()[:2] and copy["cmd"].endswith("--root variants/noise_trained")
    code = lambda stage: sorted(d for d in stage["deps"] if d.startswith(("src/", "stages/")))  # noqa: E731
    assert code(copy) == code(base)
    assert copy["params"] == [p.replace("${item.model_type}", "generative") for p in base["params"]]
    assert all(d.startswith(("src/", "stages/", "variants/noise_trained/")) for d in copy["deps"])
