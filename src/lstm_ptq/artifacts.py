"""Deterministic, atomic writing of pipeline outputs, committed together.

Every output is written to a temporary file in its destination directory and moved into place with
``os.replace``, so an interrupted stage never leaves a half-written file where a good one was.

Inside :func:`outputs_together` (every stage runs in one: ``cli.run_stage``) the moves wait until the
stage returns: each written file and each staged directory stays beside its final path, readable
through this module's readers, and all of them are moved into place at the end. A stage that fails
removes its pending copies and leaves every previous output as it was, never new files beside old
ones. Files that a stage keeps for itself while it runs (training's resume state) are written at once
(``working_state=True``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# A fixed timestamp for zip members, so the same arrays always give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass
class _Outputs:
    """The outputs of the running :func:`outputs_together` block: final path -> the complete copy
    waiting beside it (a file or a staged directory), in the order they were written."""

    pending: dict[Path, Path] = field(default_factory=dict)
    staging: set[Path] = field(default_factory=set)  # staging directories still being filled

    def holds(self, path: Path) -> bool:
        """Whether ``path`` lies inside a staging directory, which no one else sees: written at once."""
        return any(root == path or root in path.parents for root in self.staging)

    def add(self, final: Path, ready: Path) -> None:
        previous = self.pending.pop(final, None)  # a second write of one output: the last one wins
        if previous is not None:
            _remove(previous)
        self.pending[final] = ready

    def in_directory(self, path: Path) -> Path | None:
        """Where ``path`` lies in a directory output already built and waiting, if it lies in one."""
        for final, ready in self.pending.items():
            if final in path.parents and ready.is_dir():
                return ready / path.relative_to(final)
        return None

    def readable(self, path: Path) -> Path:
        """Where ``path``'s current content is: its pending copy, the file inside a pending directory, or itself."""
        if path in self.pending:
            return self.pending[path]
        return self.in_directory(path) or path


_outputs: _Outputs | None = None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def outputs_together() -> Iterator[None]:
    """Hold every output written in the block (:func:`atomic_write_bytes` and the writers built on it,
    :func:`staged_output`, :func:`save_figure`) beside its final path, and move them all into place when
    the block ends normally; when it raises, remove the pending copies, so the previous outputs stay.

    Moving them is one rename per output (a directory's previous version is kept aside until the new
    one is in place): the work that can fail, computing and writing, is done before the first one.
    Blocks do not nest; a stage process runs in exactly one.
    """
    global _outputs
    if _outputs is not None:
        raise RuntimeError("outputs_together blocks do not nest")
    _outputs = outputs = _Outputs()
    try:
        yield
    except BaseException:
        _outputs = None
        for ready in outputs.pending.values():
            _remove(ready)
        raise
    _outputs = None
    try:
        for final, ready in outputs.pending.items():
            if ready.is_dir():
                replace_directory(ready, final)
            else:
                os.replace(ready, final)
    except BaseException:
        for ready in outputs.pending.values():
            if ready.exists():
                _remove(ready)
        raise


def readable_path(path: str | os.PathLike[str]) -> Path:
    """Where a stage reads ``path`` from: inside :func:`outputs_together`, an output the stage wrote
    itself is still waiting beside its final path; elsewhere, the path itself."""
    path = Path(path)
    return path if _outputs is None else _outputs.readable(path)


def _write_beside(path: Path, data: bytes) -> Path:
    """``data`` in a new fsynced temporary file in ``path``'s directory; returns the temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, working_state: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename).

    Inside :func:`outputs_together` the rename waits for the end of the block, unless the file is
    ``working_state`` (kept by the stage for itself, such as a resume file) or lies in a staging
    directory."""
    path = Path(path)
    staged = _outputs.in_directory(path) if _outputs is not None else None
    if staged is not None:  # into a directory output already built: its waiting copy
        path = staged
    tmp = _write_beside(path, data)
    if _outputs is not None and staged is None and not working_state and not _outputs.holds(path):
        _outputs.add(path, tmp)
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike[str], expect: type = object) -> Any:
    """The JSON value in ``path``, which must be an ``expect`` (``dict``, ``list``...); a missing file,
    bytes that are not UTF-8 JSON, or a value of another type is a DataError naming the file."""
    from .errors import DataError

    path = Path(path)
    raw = read_input_bytes(path)
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start}); expected JSON") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # an integer of more than 4,300 digits, nesting deeper than the parser's stack
        raise DataError(f"{path}: not loadable JSON ({type(exc).__name__})") from None
    if not isinstance(value, expect):
        raise DataError(
            f"{path}: expected a JSON {_JSON_NAMES.get(expect, expect.__name__)}, found a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}"
        )
    return value


# How JSON calls the Python types json.loads returns, for error messages.
_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def read_input_bytes(path: Path) -> bytes:
    """The bytes of an input file; a missing or unreadable one is a DataError naming it."""
    from .errors import DataError

    try:
        return readable_path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:  # a directory, no permission, an I/O error
        raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None


def read_frame(path: str | os.PathLike[str], columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table the pipeline wrote (:func:`write_frame`), which must hold ``columns``; a missing,
    empty or malformed file is a DataError naming it."""
    import pandas as pd

    from .errors import DataError

    path = Path(path)
    raw = read_input_bytes(path)
    try:
        frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; expected a CSV table with a header row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column {missing}; expected columns {list(columns)}")
    return frame


def arrays_to_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialise arrays as an ``.npz`` archive with fixed member timestamps (byte-reproducible)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_arrays(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    atomic_write_bytes(path, arrays_to_bytes(arrays))


def load_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load an ``.npz`` written by :func:`save_arrays`; pickled objects are refused, and a damaged or
    foreign file is a DataError naming it."""
    from .errors import DataError

    path = Path(path)
    source = readable_path(path)
    if not source.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(source, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # numpy and zipfile raise EOFError, ValueError, BadZipFile, zlib.error, TypeError (a bare .npy), ...
        raise DataError(f"{path}: not a loadable .npz archive ({type(exc).__name__}: {exc})") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # NpzFile returns the raw bytes of a member not named *.npy
            raise DataError(f"{path}: member {name!r} is not a .npy array")
    return arrays


# numpy dtype kinds, named for error messages
_KIND_NAMES = {"i": "signed integer", "u": "unsigned integer", "f": "floating point", "b": "boolean"}


def require_array(
    arrays: Mapping[str, np.ndarray], path: Path, name: str, *, ndim: int, kinds: str, low: float | None = None, high: float | None = None
) -> np.ndarray:
    """``arrays[name]`` from the file ``path``, checked before use: ``ndim`` dimensions, a dtype of one of
    the numpy ``kinds`` (``"iu"``: integers), finite values in ``[low, high)``. A failure is a DataError
    naming the file, the array and what was expected; an int64 label of -1 would otherwise index the last class."""
    from .errors import DataError

    if name not in arrays:
        raise DataError(f"{path}: no {name!r} array; found {sorted(arrays)}")
    array = arrays[name]
    if array.ndim != ndim:
        raise DataError(f"{path}: array {name!r} has shape {array.shape}; expected {ndim} dimension{'s' if ndim != 1 else ''}")
    if array.dtype.kind not in kinds:
        expected = " or ".join(_KIND_NAMES[k] for k in kinds)
        raise DataError(f"{path}: array {name!r} has dtype {array.dtype}; expected {expected} values")
    if array.size and array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
        raise DataError(f"{path}: array {name!r} holds a NaN or infinite value")
    bounds = f"[{'-inf' if low is None else low}, {'inf' if high is None else high})"
    if array.size and low is not None and array.min() < low:
        raise DataError(f"{path}: array {name!r} holds {array.min()}; expected values in {bounds}")
    if array.size and high is not None and array.max() >= high:
        raise DataError(f"{path}: array {name!r} holds {array.max()}; expected values in {bounds}")
    return array


def save_torch(path: str | os.PathLike[str], obj: Any, *, working_state: bool = False) -> None:
    """``torch.save`` of ``obj`` written atomically (:func:`atomic_write_bytes`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue(), working_state=working_state)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """A matplotlib figure as PNG, written atomically (:func:`atomic_write_bytes`): the bytes
    ``fig.savefig(path, dpi=dpi)`` writes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` on the CPU; any failure is a DataError naming the file and ``what``."""
    import torch

    from .errors import DataError

    try:
        return torch.load(readable_path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt, empty or pickled-object files
        lines = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
        raise DataError(f"{path}: not a loadable {what} ({detail})") from None


def replace_directory(staged: Path, final: Path) -> None:
    """Move a fully written ``staged`` directory to ``final``, replacing any previous one.

    The previous directory is kept aside until the new one is in place, so a failure leaves either
    the old or the new output, never a mix.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    backup = final.parent / f".{final.name}.old"
    if backup.exists():
        shutil.rmtree(backup)
    if final.exists():
        os.replace(final, backup)
    try:
        os.replace(staged, final)
    except BaseException:
        if backup.exists() and not final.exists():
            os.replace(backup, final)
        raise
    if backup.exists():
        shutil.rmtree(backup)


def _staging_directory(final: Path) -> Path:
    """A fresh empty directory beside ``final`` for building its replacement."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))


@contextmanager
def staged_output(final: Path) -> Iterator[Path]:
    """Build a directory output in a fresh staging directory beside ``final``; when the block ends
    normally it replaces ``final`` (:func:`replace_directory`; inside :func:`outputs_together`, with the
    stage's other outputs), when it raises the staging directory is removed and the previous ``final``,
    if any, is left as it was.

        with staged_output(out_dir) as staged:
            save_arrays(staged / "train.npz", ...)
    """
    staged = _staging_directory(final)
    outputs = _outputs
    if outputs is not None:
        outputs.staging.add(staged)
    try:
        yield staged
        if outputs is not None and outputs is _outputs:  # moved into place with the stage's other outputs
            outputs.add(final, staged)
            return
        replace_directory(staged, final)
    finally:
        if outputs is not None:
            outputs.staging.discard(staged)
        if staged.exists() and (outputs is None or outputs.pending.get(final) != staged):
            shutil.rmtree(staged)


def write_frame(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """A data frame as CSV (header row, no index, ``\\n`` line endings), written atomically.

    Build report frames with ``dtype=object`` so every value is written as Python writes it (floats
    as ``repr``, ints as ints even beside missing values, None as an empty field), the bytes
    ``csv.DictWriter`` wrote before pandas built the reports."""
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
