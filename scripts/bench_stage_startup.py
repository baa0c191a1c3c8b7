"""Fixed cost of a stage process: interpreter start to the stage's first useful work, per stage type.

Each stage script is started ``--repeats`` times with the arguments of its first cell in dvc.yaml (the
first value of every matrix axis) and run through its own ``parser`` and ``read_settings`` by the
project's ``run_stage``, with a ``main`` that exits at once: the time covers the interpreter, every
module-level import, the matrix-item checks and the validation of params.yaml, and stops where the
stage would begin reading its inputs. The median wall time and the median CPU time (user + system of
the child) are printed; the CPU time is what to compare when other work shares the machine.
``--rebuild`` also times the rebuild of a quantized model from its float weights (what a calibrate or
noise cell does before its first useful work), with Brevitas' TorchScript compilation on and off.

    ./run python scripts/bench_stage_startup.py
    ./run python scripts/bench_stage_startup.py --stages calibrate quantize --repeats 5 --rebuild
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# The stage script as a module (not __main__), then run_stage with a main that stops before any work.
_TO_FIRST_WORK = """
import sys
from runpy import run_path
stage = run_path(sys.argv[1], run_name="stage_startup")
from lstm_ptq.cli import run_stage
def first_work(args, settings):
    raise SystemExit(0)
run_stage(stage["parser"], stage["read_settings"], first_work, sys.argv[2:])
"""

_REBUILD = """
import time, torch
started = time.perf_counter()
from lstm_ptq import quantization as Q
from lstm_ptq.models import ModelConfig, build_model
imported = time.perf_counter()
model = build_model(ModelConfig("generative", 10000, 4, 100, 100, 1, 100)).eval()
Q.quantize(model, Q.QuantSpec(bit_width=4))
print(f"{imported - started:.3f} {time.perf_counter() - imported:.3f}")
"""


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for key in dotted.split("."):
        node = node[key]
    return node


def first_cells(dvc_yaml: dict[str, Any], params: dict[str, Any]) -> dict[str, list[str]]:
    """Each stage script's arguments in its first dvc.yaml stage, every ``${item.x}`` set to the first
    value of matrix axis ``x`` and every other ``${a.b}`` to its params value."""
    cells: dict[str, list[str]] = {}
    for stage in dvc_yaml["stages"].values():
        matrix = {axis: _lookup(params, values[2:-1]) if isinstance(values, str) else values for axis, values in stage.get("matrix", {}).items()}

        def substitute(match: re.Match[str], matrix: dict[str, Any] = matrix) -> str:
            name = match.group(1)
            return str(matrix[name[5:]][0] if name.startswith("item.") else _lookup(params, name))

        _, script, *argv = shlex.split(re.sub(r"\$\{([\w.]+)\}", substitute, stage["cmd"]))
        cells.setdefault(Path(script).stem, [script, *argv])
    return cells


def timed_run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{shlex.join(argv[3:])} failed with exit status {done.returncode}:\n{done.stderr}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="*", help="stage script names (default: every script in stages/)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="also time a quantized model's rebuild, JIT on and off")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    cells = first_cells(yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8")), params)
    names = args.stages or sorted(cells)

    walls, cpus = {}, {}
    print(f"{'stage type':20s} {'wall (median)':>14s} {'CPU (median)':>13s}  first cell")
    for name in names:
        runs = [timed_run([sys.executable, "-c", _TO_FIRST_WORK, *cells[name]], env) for _ in range(args.repeats)]
        walls[name] = statistics.median(wall for wall, _ in runs)
        cpus[name] = statistics.median(cpu for _, cpu in runs)
        print(f"{name:20s} {walls[name]:12.2f} s {cpus[name]:11.2f} s  {shlex.join(cells[name][1:])}")
    slowest = max(walls, key=walls.get)
    print(f"median over stage types: wall {statistics.median(walls.values()):.2f} s, CPU {statistics.median(cpus.values()):.2f} s; slowest: {slowest}")

    if args.rebuild:
        for jit in ("0", "1"):
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, "-c", _REBUILD], check=True, env={**env, "BREVITAS_JIT": jit}, cwd=REPO, capture_output=True, text=True)
                runs.append([float(v) for v in out.stdout.split()])
            imports = statistics.median(r[0] for r in runs)
            rebuild = statistics.median(r[1] for r in runs)
            print(f"BREVITAS_JIT={jit}: imports {imports:.2f} s, quantized generative model rebuilt from float weights in {rebuild:.2f} s (median)")


if __name__ == "__main__":
    main()
