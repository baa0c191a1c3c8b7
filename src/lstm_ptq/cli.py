"""The stage scripts' shared entry point: argv, params.yaml read once into typed settings, a clean error.

Every script in ``stages/`` has the same three parts: ``parser`` (its matrix items), ``read_settings(args,
params)`` (the only code that reads params.yaml; scripts/generate_dvc_yaml.py records what it reads and
declares exactly that in dvc.yaml) and ``main(args, settings)``, which calls the pipeline. The ``runtime``
section (threads, device) is read here, for every stage, and declared by none (see lstm_ptq.runtime).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import PipelineError
from .runtime import RuntimeSettings, apply_runtime
from .settings import check_bit_width, check_dataset, check_model_type, check_noise_model, check_scheme, load_params

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
    return parser


ReadSettings = Callable[[argparse.Namespace, Mapping[str, Any]], Any]


def run_stage(
    parser: argparse.ArgumentParser, read_settings: ReadSettings, main: Callable[[argparse.Namespace, Any], Any], argv: Sequence[str] | None = None
) -> None:
    """Parse argv, check the matrix items, validate params.yaml as a whole, read the stage's settings and
    the runtime section, then run ``main``: all before any output is touched. A stage that imported torch
    (its pipeline module does, at import) runs on the runtime's threads and device; the others never load
    torch. A :class:`PipelineError` exits 1 with its message."""
    args = parser.parse_args(argv)
    try:
        for item, (_, check) in ITEMS.items():
            if item in vars(args):
                check(getattr(args, item), item)
        params = load_params(args.params)
        settings = read_settings(args, params)
        runtime = RuntimeSettings.from_params(params)
        if "torch" in sys.modules:
            threads, device = apply_runtime(runtime)
            print(f"runtime: {threads} torch threads, device {device}", file=sys.stderr, flush=True)
        main(args, settings)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
