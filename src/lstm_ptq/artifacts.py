"""Deterministic, atomic writing of pipeline outputs.

Every output is written to a temporary file in its destination directory and moved into place with
``os.replace``, so an interrupted stage never leaves a half-written file where a good one was.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# A fixed timestamp for zip members, so the same arrays always give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        from .errors import DataError

        raise DataError(f"{path}: file not found") from None


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
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # numpy and zipfile raise EOFError, ValueError, BadZipFile, zlib.error, TypeError (a bare .npy), ...
        raise DataError(f"{path}: not a loadable .npz archive ({type(exc).__name__}: {exc})") from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # NpzFile returns the raw bytes of a member not named *.npy
            raise DataError(f"{path}: member {name!r} is not a .npy array")
    return arrays


def save_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` of ``obj`` written atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_torch(path: str | os.PathLike[str], what: str) -> Any:
    """``torch.load`` with ``weights_only=True`` on the CPU; any failure is a DataError naming the file and ``what``."""
    import torch

    from .errors import DataError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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
    normally it replaces ``final`` (:func:`replace_directory`), when it raises the staging directory
    is removed and the previous ``final``, if any, is left as it was.

        with staged_output(out_dir) as staged:
            save_arrays(staged / "train.npz", ...)
    """
    staged = _staging_directory(final)
    try:
        yield staged
        replace_directory(staged, final)
    finally:
        if staged.exists():
            shutil.rmtree(staged)


def write_frame(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """A data frame as CSV (header row, no index, ``\\n`` line endings), written atomically.

    Build report frames with ``dtype=object`` so every value is written as Python writes it (floats
    as ``repr``, ints as ints even beside missing values, None as an empty field), the bytes
    ``csv.DictWriter`` wrote before pandas built the reports."""
    atomic_write_text(path, frame.to_csv(index=False, lineterminator="\n"))
