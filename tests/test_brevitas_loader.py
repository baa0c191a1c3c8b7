"""How Brevitas is imported (quantization/brevitas_loader.py): without TorchDynamo, only by the stages
that quantize, and never stuck on a lock file a killed build of its C++ extension left behind."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from lstm_ptq.errors import PipelineError
from lstm_ptq.quantization.brevitas_loader import clear_stale_lock

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "BREVITAS_JIT": "0"}

# A builder as torch.utils.cpp_extension runs one: FileBaton holds the lock open, then closes and removes it.
_BUILDER = """
import sys, time
from torch.utils.file_baton import FileBaton
baton = FileBaton(sys.argv[1])
assert baton.try_acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
baton.release()
"""


def start_builder(lock: Path, hold_s: float) -> subprocess.Popen[str]:
    builder = subprocess.Popen([sys.executable, "-c", _BUILDER, str(lock), str(hold_s)], stdout=subprocess.PIPE, text=True)
    assert builder.stdout is not None and builder.stdout.readline().strip() == "locked"
    return builder


def test_a_lock_no_process_holds_is_removed_with_a_warning_naming_it(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.touch()
    with pytest.warns(UserWarning, match=re.escape(f"{lock}: removing the stale lock")):
        clear_stale_lock(lock, timeout_s=60.0, poll_s=0.05)
    assert not lock.exists()


def test_a_lock_a_live_builder_holds_past_the_timeout_is_an_error_naming_it(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    builder = start_builder(lock, hold_s=60.0)
    try:
        with pytest.raises(PipelineError, match=re.escape(f"{lock}: Brevitas' C++ extension build has been locked")) as raised:
            clear_stale_lock(lock, timeout_s=0.5, poll_s=0.1)
        assert str(builder.pid) in str(raised.value)
        assert lock.exists()  # a live builder's lock is never removed
    finally:
        builder.kill()
        builder.wait()


def test_a_lock_its_builder_releases_is_waited_for_and_left_to_it(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    builder = start_builder(lock, hold_s=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clear_stale_lock(lock, timeout_s=60.0, poll_s=0.05)
    assert builder.wait(timeout=60) == 0  # its own removal of the lock did not fail
    assert not lock.exists()


def read_until(child: subprocess.Popen[str], text: str, timeout_s: float) -> list[str]:
    """The child's stderr lines up to the first holding ``text`` (or its end, or the timeout); the child is then killed."""
    assert child.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(child.stderr, selectors.EVENT_READ)
    deadline, lines = time.monotonic() + timeout_s, []
    try:
        while time.monotonic() < deadline and not any(text in line for line in lines):
            if selector.select(timeout=1.0):
                line = child.stderr.readline()
                if not line:  # the child ended
                    break
                lines.append(line)
    finally:
        child.kill()
        child.wait()
    return lines


def jit_import(extensions: Path) -> subprocess.Popen[str]:
    env = {**ENV, "BREVITAS_JIT": "1", "TORCH_EXTENSIONS_DIR": str(extensions)}
    return subprocess.Popen([sys.executable, "-c", "import lstm_ptq.quantization"], env=env, stderr=subprocess.PIPE, text=True)


def test_importing_the_package_with_brevitas_jit_clears_a_stale_lock_before_the_build(tmp_path: Path) -> None:
    """Without the guard the child waits for the lock without end; with it the warning comes first (the
    child is stopped there, before its build of the extension ends)."""
    lock = tmp_path / "autograd_ste_ops" / "lock"
    lock.parent.mkdir()
    lock.touch()
    lines = read_until(jit_import(tmp_path), "stale lock", timeout_s=300)
    assert any(f"{lock}: removing the stale lock" in line for line in lines), "".join(lines)


def test_a_stage_killed_while_brevitas_builds_its_extension_does_not_wedge_the_next_one(tmp_path: Path) -> None:
    """The issue's case end to end: a process importing the package with BREVITAS_JIT=1 is killed (SIGKILL)
    while torch builds Brevitas' extension and holds its lock; the lock stays behind, and the next import
    removes it with the warning and goes on instead of waiting on it for ever."""
    lock = tmp_path / "autograd_ste_ops" / "lock"
    first = jit_import(tmp_path)
    deadline = time.monotonic() + 300
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert lock.exists(), "the first import never took the build lock"
    lines = read_until(jit_import(tmp_path), "stale lock", timeout_s=300)
    assert any(f"{lock}: removing the stale lock" in line for line in lines), "".join(lines)


_IMPORTS = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name="stage_module")
print(" ".join(name for name in ("torch", "torch._dynamo", "brevitas") if name in sys.modules))
"""


@pytest.mark.parametrize(
    ("script", "loaded"),
    [
        ("calibrate", "torch brevitas"),
        ("noise_quantized", "torch brevitas"),
        ("calibration_sets", "torch"),
        ("evaluate", "torch"),
        ("noise_train_data", ""),
        ("ptq_report", ""),
    ],
)
def test_a_stage_imports_brevitas_only_when_it_quantizes_and_never_torch_dynamo(script: str, loaded: str) -> None:
    out = subprocess.run([sys.executable, "-c", _IMPORTS, f"stages/{script}.py"], cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == loaded


def test_brevitas_reads_the_compile_flag_torch_dynamo_itself_reads() -> None:
    probe = (
        "import sys, torch, lstm_ptq.quantization, brevitas\n"
        "assert 'torch._dynamo' not in sys.modules\n"
        "assert brevitas.is_dynamo_compiling is torch.compiler.is_compiling\n"
        "import torch._dynamo.external_utils as external\n"
        "assert torch._dynamo.is_compiling is external.is_compiling and not external.is_compiling() and not brevitas.is_dynamo_compiling()\n"
        "print(*torch._dynamo.is_compiling.__code__.co_names)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["torch", "compiler", "is_compiling"]  # torch._dynamo's flag returns torch.compiler.is_compiling()


def test_checking_a_bit_width_imports_neither_torch_nor_brevitas() -> None:
    probe = (
        "import sys\n"
        "from lstm_ptq.settings import check_bit_width\n"
        "from lstm_ptq.errors import ParamError\n"
        "assert check_bit_width(4, 'bit_width') == 4\n"
        "for bad in (1, 17, True, 4.0, '4'):\n"
        "    try:\n"
        "        check_bit_width(bad, 'bit_width')\n"
        "    except ParamError:\n"
        "        continue\n"
        "    raise AssertionError(bad)\n"
        "print('torch' in sys.modules, 'brevitas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=ENV, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
