"""Shared plumbing for the thin scripts in ``stages/``: argument parsing and clean error reporting."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from .errors import PipelineError


def run_stage(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Parse arguments and run ``main``; a :class:`PipelineError` exits 1 with its message only."""
    args = parser.parse_args(argv)
    try:
        main(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
