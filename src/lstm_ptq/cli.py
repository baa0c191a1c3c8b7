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


def parse_bit_width(text: str) -> int:
    """A stage's bit-width argument; range checks happen in :class:`lstm_ptq.quantization.QuantSpec`."""
    from .errors import ParamError

    try:
        return int(text)
    except ValueError:
        raise ParamError(f"bit_width: {text!r} is not an integer") from None


def check_model_type(name: str, where: str = "model_type") -> str:
    from .errors import ParamError
    from .models import MODEL_TYPES

    if name not in MODEL_TYPES:
        raise ParamError(f"{where}: unknown model {name!r}; expected one of {list(MODEL_TYPES)}")
    return name
