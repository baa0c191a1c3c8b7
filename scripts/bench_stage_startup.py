"""Fixed cost of a stage process: interpreter start and imports up to argument parsing, per stage script.

Each stage script is started ``--repeats`` times with ``--help`` (a stage imports everything it needs
before it parses its arguments, and ``--help`` stops there) and the median wall time is printed.
``--rebuild`` also times the rebuild of a quantized
model from its float weights (what a calibrate or noise cell does before its first useful work),
with Brevitas' TorchScript compilation on and off.

    ./run python scripts/bench_stage_startup.py
    ./run python scripts/bench_stage_startup.py --stages calibrate quantize --repeats 5 --rebuild
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def timed_run(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one child process."""
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="*", help="stage script names (default: every script in stages/)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="also time a quantized model's rebuild, JIT on and off")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    names = args.stages or sorted(p.stem for p in (REPO / "stages").glob("*.py"))

    medians = {}
    print(f"{'stage script':24s} {'median start-up':>16s}")
    for name in names:
        times = [timed_run([sys.executable, f"stages/{name}.py", "--help"], env) for _ in range(args.repeats)]
        medians[name] = statistics.median(times)
        print(f"{name:24s} {medians[name]:14.2f} s")
    print(f"median over stage scripts: {statistics.median(medians.values()):.2f} s; slowest: {max(medians, key=medians.get)}")

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
