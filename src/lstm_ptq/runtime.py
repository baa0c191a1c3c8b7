"""How a stage process runs, not what it computes: torch's thread count and device, from the environment.

``LSTM_PTQ_THREADS`` (torch's intra-op threads, default: torch's own, one per core) and ``LSTM_PTQ_DEVICE``
(``cpu``, the default; ``cuda``; or ``auto``: cuda where torch sees a GPU) describe the machine a stage runs
on, like its CPU model, so they are environment variables and not params.yaml keys: params.yaml holds the
study, and every key in it is declared for the stages that read it (tests/test_params_declared.py). Reading
them in :func:`lstm_ptq.cli.run_stage` means a machine running ``dvc queue start -j 2`` sets
``LSTM_PTQ_THREADS=1`` without touching the study, and results pulled from a remote or the run-cache stay
valid on a machine with another thread count.

That is sound for scoring, calibration and the analysis, whose outputs do not depend on the thread count
(tests/test_runtime.py scores with 1 and 2 threads and compares the bytes). Training is the exception: a
small model trained on 1 and on 2 threads once came out with different bytes, so the train stages use their
own tracked ``train.num_threads`` and ignore ``LSTM_PTQ_THREADS``. The device is untracked for the same
reason the CPU model is: CUDA kernels round differently from the CPU, so results computed on ``cuda`` match
the CPU's only to float tolerance (docs/scaling.md), and a study should be run on one kind of device.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ParamError

THREADS_ENV = "LSTM_PTQ_THREADS"
DEVICE_ENV = "LSTM_PTQ_DEVICE"
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "cpu"


@dataclass(frozen=True)
class RuntimeSettings:
    """Torch's intra-op threads per stage process (None: torch's default) and the device (``auto`` | ``cpu`` | ``cuda``)."""

    num_threads: int | None
    device: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        threads: int | None = None
        if THREADS_ENV in environ:
            text = environ[THREADS_ENV]
            try:
                threads = int(text)
            except ValueError:
                raise ParamError(f"{THREADS_ENV}={text!r} is not an integer (torch threads per stage process)") from None
            if threads < 1:
                raise ParamError(f"{THREADS_ENV}={threads} must be an integer >= 1")
        device = environ.get(DEVICE_ENV, DEFAULT_DEVICE)
        if device not in DEVICES:
            raise ParamError(f"{DEVICE_ENV}={device!r} is not one of {list(DEVICES)}")
        return cls(threads, device)


def resolve_device(device: str, cuda_available: bool) -> str:
    """``auto`` is ``cuda`` where a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return "cuda" if cuda_available else "cpu"
    if device == "cuda" and not cuda_available:
        raise ParamError(f"{DEVICE_ENV}='cuda', but torch sees no CUDA device (torch.cuda.is_available() is False); use 'cpu' or 'auto'")
    return device


def apply_runtime(settings: RuntimeSettings) -> tuple[int, str]:
    """Set torch's thread count and default device for this process; returns both as torch now has them.

    On ``cuda`` every tensor and module that torch creates lands on the GPU (``torch.set_default_device``);
    the package builds tensors from numpy arrays with ``torch.as_tensor``, which follows that default, and
    brings results back with ``.cpu()`` before ``.numpy()``. On ``cpu`` no default is installed: the device
    context costs a dispatch on every call.
    """
    import torch

    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    device = resolve_device(settings.device, torch.cuda.is_available())
    if device != "cpu":
        torch.set_default_device(device)
    return torch.get_num_threads(), device
