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
        return path.read_bytes()
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
