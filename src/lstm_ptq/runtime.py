"""How a stage process runs, not what it computes: torch's thread count and device (the ``runtime`` section).

:func:`lstm_ptq.cli.run_stage` reads the section for every stage, outside the stage's ``read_settings``, so
dvc.yaml declares it for no stage: changing it reruns nothing, and a machine running ``dvc queue start -j 2``
can set ``LSTM_PTQ_THREADS=1`` without touching params.yaml. That is sound for scoring, calibration and the
analysis, whose outputs do not depend on the thread count (tests/test_runtime.py scores with 1 and 2 threads
and compares the bytes). Training is the exception: a small model trained on 1 and on 2 threads once came
out with different bytes, so the train stages keep their own, tracked ``train.num_threads``. The device is
untracked too, and CUDA kernels round differently from the CPU: results computed on ``cuda`` match the CPU's
only to float tolerance, and DVC does not see a change of device.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ParamError

THREADS_ENV = "LSTM_PTQ_THREADS"
DEVICE_ENV = "LSTM_PTQ_DEVICE"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class RuntimeSettings:
    """``runtime.num_threads`` (torch's intra-op threads per stage process) and ``runtime.device``
    (``auto`` | ``cpu`` | ``cuda``), each overridden by its environment variable when that is set."""

    num_threads: int
    device: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        node = params.get("runtime")
        if not isinstance(node, Mapping):
            raise ParamError("runtime: missing from params.yaml (num_threads and device)")
        threads = _override(node, "num_threads", THREADS_ENV, environ)
        if THREADS_ENV in environ:
            try:
                threads = int(threads)
            except ValueError:
                raise ParamError(f"{THREADS_ENV}={threads!r} (overrides runtime.num_threads) is not an integer") from None
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParamError(f"{_name('num_threads', THREADS_ENV, environ)}: {threads!r} must be an integer >= 1")
        device = _override(node, "device", DEVICE_ENV, environ)
        if device not in DEVICES:
            raise ParamError(f"{_name('device', DEVICE_ENV, environ)}: {device!r} is not one of {list(DEVICES)}")
        return cls(threads, device)


def _name(key: str, env: str, environ: Mapping[str, str]) -> str:
    """The setting's name in an error: the environment variable when it overrode the key."""
    return f"{env} (overrides runtime.{key})" if env in environ else f"runtime.{key}"


def _override(node: Mapping[str, Any], key: str, env: str, environ: Mapping[str, str]) -> Any:
    if env in environ:
        return environ[env]
    if key not in node:
        raise ParamError(f"runtime.{key}: missing from params.yaml")
    return node[key]


def resolve_device(device: str, cuda_available: bool, where: str = "runtime.device") -> str:
    """``auto`` is ``cuda`` where a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise ParamError(f"{where}: 'cuda', but torch sees no CUDA device (torch.cuda.is_available() is False); use 'cpu' or 'auto'")
    return device


def apply_runtime(settings: RuntimeSettings, environ: Mapping[str, str] = os.environ) -> tuple[int, str]:
    """Set torch's thread count and default device for this process; returns both as torch now has them.

    On ``cuda`` every tensor and module that torch creates lands on the GPU (``torch.set_default_device``);
    the package builds tensors from numpy arrays with ``torch.as_tensor``, which follows that default, and
    brings results back with ``.cpu()`` before ``.numpy()``. On ``cpu`` no default is installed: the device context costs a dispatch on every call.
    """
    import torch

    torch.set_num_threads(settings.num_threads)
    device = resolve_device(settings.device, torch.cuda.is_available(), _name("device", DEVICE_ENV, environ))
    if device != "cpu":
        torch.set_default_device(device)
    return torch.get_num_threads(), device
