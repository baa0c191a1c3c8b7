"""The stage scripts' shared entry point: argv, params.yaml read once into typed settings, a clean error.

Every script in ``stages/`` has the same three parts: ``parser`` (its matrix items), ``read_settings(args,
params)`` (the only code that reads params.yaml; scripts/generate_dvc_yaml.py records what it reads and
declares exactly that in dvc.yaml) and ``main(args, settings)``, which calls the pipeline. The machine's
torch threads and device come from the environment (``LSTM_PTQ_THREADS``, ``LSTM_PTQ_DEVICE``; lstm_ptq.runtime).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import warm
from .artifacts import outputs_together
from .errors import PipelineError
from .paths import ProjectPaths
from .runtime import RuntimeSettings, apply_runtime
from .settings import TreeSettings, check_bit_width, check_dataset, check_model_type, check_noise_model, check_scheme, load_params

# Set to 1, a stage stops where its work would begin: scripts/bench_stage_startup.py times its fixed cost.
DRY_START_ENV = "LSTM_PTQ_DRY_START"

# A matrix item of dvc.yaml: its argparse type and the check that gives the project's error.
ITEMS: dict[str, tuple[type, Callable[[Any, str], Any]]] = {
    "dataset": (str, check_dataset),
    "model_type": (str, check_model_type),
    "bit_width": (int, check_bit_width),
    "scheme": (str, check_scheme),
    "noise_model": (str, check_noise_model),
}


def stage_parser(description: str | None, *items: str) -> argparse.ArgumentParser:
    """Positional ``items`` (names from :data:`ITEMS`), then ``--params`` and ``--root``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for item in items:
        parser.add_argument(item, type=ITEMS[item][0])
    parser.add_argument("--params", default="params.yaml", help="the parameter file (default: params.yaml)")
    parser.add_argument("--root", default=Path("."), type=Path, help="the project tree to read and write (default: .)")
    parser.add_argument("--tree", help="run in the tree trees.<TREE> of params.yaml: <root>/variants/<TREE>, reading <root>'s data")
    return parser


def stage_inputs(args: argparse.Namespace, params: Mapping[str, Any]) -> tuple[Mapping[str, Any], ProjectPaths]:
    """The params the stage reads and the paths it reads and writes: with ``--tree``, the tree's view of
    params.yaml and its paths under ``--root`` (settings.TreeSettings), else params.yaml and ``--root``."""
    if args.tree is None:
        return params, ProjectPaths(args.root)
    tree = TreeSettings.from_params(params, args.tree)
    return tree.view(params), tree.paths(args.root)


ReadSettings = Callable[[argparse.Namespace, Mapping[str, Any]], Any]


def run_stage(
    parser: argparse.ArgumentParser, read_settings: ReadSettings, main: Callable[[argparse.Namespace, Any], Any], argv: Sequence[str] | None = None
) -> None:
    """Parse argv, check the matrix items, validate params.yaml as a whole, read the stage's settings (and
    set ``args.paths``), then run ``main``: all before any output is touched. A :class:`PipelineError` exits 1 with its message,
    and so does an :class:`OSError` (a full disk, an output path that cannot be written), naming the file: outputs are
    written beside their final paths and moved into place together when ``main`` returns
    (artifacts.outputs_together), so after a failure the previous ones are all still there."""
    args = parser.parse_args(argv)
    try:
        for item, (_, check) in ITEMS.items():
            if item in vars(args):
                check(getattr(args, item), item)
        params, args.paths = stage_inputs(args, load_params(args.params))
        settings = read_settings(args, params)
        runtime = RuntimeSettings.from_environ()
        if warm.stage_loaded("torch"):  # the stage's pipeline module imported it; the others never load torch
            threads, device = apply_runtime(runtime)
            print(f"runtime: {threads} torch threads, device {device}", file=sys.stderr, flush=True)
        if os.environ.get(DRY_START_ENV) == "1":  # scripts/bench_stage_startup.py: the fixed cost, without the work
            return
        with outputs_together():  # every output moves into place when main returns, or none does
            main(args, settings)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:
        where = exc.filename if exc.filename is not None else "writing an output"
        print(f"error: {where}: {exc.strerror or exc}; this stage's previous outputs are unchanged", file=sys.stderr)
        raise SystemExit(1) from None
