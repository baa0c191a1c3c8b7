"""Peak memory (maximum resident set size) of stage processes, by running their commands again.

Each named stage's command, as DVC resolves it from the project's dvc.yaml files, is run in the
repository root in a fresh child process, and the child's maximum resident set size is printed
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a probe process that runs only that child). Run it on
a repository whose pipeline has run: a stage command rewrites its own outputs, with the same bytes (the
stages are deterministic), so ``dvc status`` stays clean. The default stages are the largest cell of each
memory-heavy stage type (AG News, the generative model, 3 bits).

    ./run python scripts/bench_peak_memory.py
    ./run python scripts/bench_peak_memory.py train@ag_news-generative ks_analysis@ag_news-generative
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_STAGES = (
    "train@ag_news-generative",
    "evaluate@ag_news-generative",
    "noise_float@ag_news-generative-uniform_substitution",
    "calibrate@ag_news-generative-3-class_conditional",
    "noise_quantized@ag_news-generative-3-class_conditional-uniform_substitution",
    "ks_analysis@ag_news-generative",
    "token_losses@ag_news",
    "per_class@ag_news-generative",
    "findings",
)

_PROBE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.stderr.write(done.stderr if done.returncode else '')\n"
    "raise SystemExit(done.returncode)\n"
)


def stage_commands(names: list[str]) -> dict[str, str]:
    """The resolved command of each named stage (the name as ``dvc stage list --all`` shows it, without its file)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        commands = {stage.name: stage.cmd for stage in repo.index.stages}
    missing = [n for n in names if n not in commands]
    if missing:
        raise SystemExit(f"no such stage in the project's dvc.yaml files: {', '.join(missing)}")
    return {n: commands[n] for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*", default=list(DEFAULT_STAGES))
    args = parser.parse_args()
    # LSTM_PTQ_WARM=0: a stage handed to the warm runner would run in the runner's fork, and the probe would
    # measure only the thin process that forwarded it
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LSTM_PTQ_WARM": "0"}
    print(f"{'stage':70} {'peak RSS':>10} {'wall':>8}")
    peaks = {}
    for name, cmd in stage_commands(args.stages).items():
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _PROBE, *shlex.split(cmd)], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{name}: `{cmd}` failed with exit status {done.returncode}:\n{done.stderr}")
        peaks[name] = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
        print(f"{name:70} {peaks[name]:7.0f} MiB {time.perf_counter() - started:6.1f} s", flush=True)
    largest = max(peaks, key=peaks.get)
    print(f"largest: {largest}, {peaks[largest]:.0f} MiB")


if __name__ == "__main__":
    main()
