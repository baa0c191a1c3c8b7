"""Brevitas, imported by :func:`import_brevitas` when this module is imported: the package imports it first.

Two costs of a plain ``import brevitas`` fall on every stage process that quantizes (docs/quantization.md,
pitfall 10):

* ``brevitas/__init__`` reads ``torch._dynamo.is_compiling``, which imports all of TorchDynamo, about
  2 s of CPU, for a flag that only matters under ``torch.compile`` (never used here). While Brevitas
  imports, ``torch._dynamo`` stands for an object holding ``torch.compiler.is_compiling``, the function
  ``torch._dynamo.is_compiling`` itself returns; the real ``torch._dynamo`` loads on first use after.
* With ``BREVITAS_JIT=1`` Brevitas builds or loads its C++ STE ops through ``torch.utils.cpp_extension``,
  which waits without end while the build directory's ``lock`` file exists: a process killed while
  building leaves it behind. :func:`clear_stale_lock` removes a lock no live process holds.
"""

from __future__ import annotations

import os
import sys
import time
import types
import warnings
from pathlib import Path

import torch

from ..errors import PipelineError

JIT_EXTENSION = "autograd_ste_ops"  # the name brevitas/__init__ passes to cpp_extension.load
JIT_LOCK_TIMEOUT_S = 900.0  # a live build of the extension takes about a minute on 2 cores
_TRUE = ("y", "yes", "t", "true", "on", "1")  # brevitas.config.strtobool's true values


def native_backend_enabled() -> bool:
    """Whether importing Brevitas builds or loads its C++ extension (brevitas.config, read before it is imported)."""
    return any(os.environ.get(name, "false").lower() in _TRUE for name in ("BREVITAS_JIT", "BREVITAS_NATIVE_STE_BACKEND"))


def jit_lock_path() -> Path:
    """The lock file torch.utils.cpp_extension takes in the extension's build directory."""
    from torch.utils.cpp_extension import _get_build_directory

    return Path(_get_build_directory(JIT_EXTENSION, verbose=False)) / "lock"


def lock_holders(lock: Path) -> list[int] | None:
    """Ids of the processes that hold ``lock`` open (a builder keeps it open until it removes it), from
    /proc; None where /proc does not list open files."""
    if not Path("/proc/self/fd").is_dir():
        return None
    target, holders = os.path.realpath(lock), []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == target for fd in fd_dir.iterdir()):
                holders.append(int(fd_dir.parent.name))
        except OSError:  # a process that exited, or one of another user
            continue
    return holders


def clear_stale_lock(lock: Path, timeout_s: float = JIT_LOCK_TIMEOUT_S, poll_s: float = 1.0) -> None:
    """Remove ``lock`` with a warning when it is stale: held by no live process at two looks ``poll_s``
    apart (a builder closes the file just before it removes it), or, where open files cannot be listed,
    older than ``timeout_s``. A lock that a live process holds is waited for, at most ``timeout_s``, then
    a :class:`PipelineError` names it."""
    deadline = time.monotonic() + timeout_s
    unheld_before = False
    while True:
        try:
            age_s = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        holders = lock_holders(lock)
        if (holders == [] and unheld_before) or (holders is None and age_s > timeout_s):
            why = "held by no process" if holders == [] else f"older than {timeout_s:.0f} s"
            warnings.warn(f"{lock}: removing the stale lock of Brevitas' C++ extension build ({age_s:.0f} s old, {why})", stacklevel=2)
            lock.unlink(missing_ok=True)
            return
        unheld_before = holders == []
        if holders and time.monotonic() > deadline:
            raise PipelineError(
                f"{lock}: Brevitas' C++ extension build has been locked for over {timeout_s:.0f} s by process {holders};"
                " end that process or remove the file (or run with BREVITAS_JIT=0)"
            )
        time.sleep(poll_s)


def import_brevitas() -> None:
    """Import Brevitas without TorchDynamo, after clearing a stale extension lock when it builds one."""
    if "brevitas" in sys.modules:
        return
    if native_backend_enabled():
        clear_stale_lock(jit_lock_path())
    if "torch._dynamo" in sys.modules:
        import brevitas  # noqa: F401

        return
    torch._dynamo = types.SimpleNamespace(is_compiling=torch.compiler.is_compiling)
    try:
        import brevitas  # noqa: F401
    finally:
        del torch._dynamo


import_brevitas()
