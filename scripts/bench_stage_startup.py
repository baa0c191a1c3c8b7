"""Fixed cost of a stage process: interpreter start to the stage's first useful work, per stage type.

Each stage script is started ``--repeats`` times as dvc.yaml starts it (``python stages/<name>.py`` with
the arguments of its first cell: the first value of every matrix axis), with ``LSTM_PTQ_DRY_START=1``,
which makes ``cli.run_stage`` stop where the stage's work would begin: the time covers the interpreter,
every module-level import, the matrix-item checks and the validation of params.yaml, and stops where the
stage would begin reading its inputs. It is measured twice: in a fresh process per stage
(``LSTM_PTQ_WARM=0``) and handed to a warm runner (``LSTM_PTQ_WARM=1``, lstm_ptq/warm.py; started once
before the timed runs). The median wall time is printed, and for fresh processes the median CPU time
(user + system), which is what to compare when other work shares the machine; a served stage's CPU time
is spent in the runner's child, not in the timed process, so only its wall time is printed.
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
from generate_dvc_yaml import project_files

from lstm_ptq import warm as warm_runner
from lstm_ptq.cli import DRY_START_ENV

REPO = Path(__file__).resolve().parents[1]

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
    cells: dict[str, list[str]] = {}
    for dvc_yaml in project_files(REPO):  # the root file's stages first, then the families' (and the trees')
        for name, argv in first_cells(yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")), params).items():
            cells.setdefault(name, argv)
    names = args.stages or sorted(cells)

    env[DRY_START_ENV] = "1"
    for warm in ("0", "1"):
        mode = {**env, warm_runner.ENV: warm}
        if warm == "1":  # the first stage starts the runner and runs in its own process; wait until it answers
            timed_run([sys.executable, *cells[names[0]]], mode)
            if not warm_runner.wait_until_serving(mode, timeout=180):
                raise SystemExit("the warm runner did not answer within 180 s")
        walls, cpus = {}, {}
        print(f"\n{'fresh process per stage' if warm == '0' else 'warm runner'} ({warm_runner.ENV}={warm})")
        print(f"{'stage type':20s} {'wall (median)':>14s} {'CPU (median)':>13s}  first cell")
        for name in names:
            runs = [timed_run([sys.executable, *cells[name]], mode) for _ in range(args.repeats)]
            walls[name] = statistics.median(wall for wall, _ in runs)
            cpus[name] = statistics.median(cpu for _, cpu in runs)
            cpu = f"{cpus[name]:11.2f} s" if warm == "0" else f"{'-':>13s}"  # the runner's child is not this process's child
            print(f"{name:20s} {walls[name]:12.2f} s {cpu}  {shlex.join(cells[name][1:])}")
        slowest = max(walls, key=walls.get)
        cpu_median = f", CPU {statistics.median(cpus.values()):.2f} s" if warm == "0" else ""
        print(f"median over stage types: wall {statistics.median(walls.values()):.2f} s{cpu_median}; slowest: {slowest}")

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
