"""The ``download`` stage: materialise ``data/raw/<dataset>/{train,test}.csv`` and ``classes.txt``.

Two sources share one output format (the original release):
- ``bundled``: real rows shipped gzip-compressed in ``data/bundled`` (see its PROVENANCE.md). For DBPedia
  the bundled rows are all from the official train split, so a stratified, seeded test split is carved
  out of them.
- ``remote``: the canonical release archive (``<name>_csv.tgz``), streamed to a temporary file,
  checked against its SHA-256, and extracted member by member with no path escapes and no links.

Outputs are staged in a sibling directory and swapped in only when complete.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from .artifacts import atomic_write_text, staged_output
from .datasets import DatasetSpec, Document, dataset_spec, decode_utf8, format_release_csv, parse_release_csv, read_classes
from .errors import DataError, DownloadError, ParamError
from .settings import DownloadSettings, RemoteSource
from .splits import stratified_split

CHUNK = 1 << 20


def _read_sha256sums(bundled_root: Path) -> dict[str, str]:
    path = bundled_root / "SHA256SUMS"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    sums = {}
    for number, line in enumerate(lines, 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataError(f"{path}: line {number}: expected '<sha256>  <path>'")
        sums[name] = digest
    return sums


def read_bundled_csv(bundled_root: Path, spec: DatasetSpec, name: str) -> list[Document]:
    """Decompress, checksum and parse one bundled CSV."""
    path = bundled_root / spec.name / f"{name}.gz"
    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    expected = _read_sha256sums(bundled_root).get(f"{spec.name}/{name}")
    if expected is None:
        raise DataError(f"{bundled_root / 'SHA256SUMS'}: no checksum listed for {spec.name}/{name}")
    actual = hashlib.sha256(raw).hexdigest()
    if expected != actual:
        raise DataError(f"{path}: decompressed SHA-256 {actual} does not match SHA256SUMS ({expected})")
    return parse_release_csv(path, decode_utf8(path, raw), spec.num_classes)


def _write_release(staged: Path, spec: DatasetSpec, train: list[Document], test: list[Document], classes: list[str]) -> None:
    atomic_write_text(staged / "train.csv", format_release_csv(train, spec))
    atomic_write_text(staged / "test.csv", format_release_csv(test, spec))
    atomic_write_text(staged / "classes.txt", "".join(f"{name}\n" for name in classes))


def materialize_bundled(spec: DatasetSpec, bundled_root: Path, staged: Path, test_fraction: float | None, seed: int, extra_train: bool = False) -> None:
    """Release files from the bundled rows. Extra rows, if asked for, join the training split only,
    after any test split has been carved out of ``train.csv``."""
    classes = read_classes(bundled_root / spec.name / "classes.txt", spec)
    train = read_bundled_csv(bundled_root, spec, "train.csv")
    test_gz = bundled_root / spec.name / "test.csv.gz"
    if test_fraction is not None:
        keep, held = stratified_split([d.label for d in train], test_fraction, seed, name=f"download.{spec.name}.bundled_test_fraction")
        test = [train[i] for i in held]
        train = [train[i] for i in keep]
    elif test_gz.exists():
        test = read_bundled_csv(bundled_root, spec, "test.csv")
    else:
        raise ParamError(f"download.{spec.name}.bundled_test_fraction: required, because no bundled test split exists ({test_gz})")
    if extra_train:
        train = train + read_bundled_csv(bundled_root, spec, spec.extra_train_file)
    _write_release(staged, spec, train, test, classes)


def _stream_to_file(source: RemoteSource, destination: Path) -> str:
    """Stream ``source.url`` into ``destination``; returns the SHA-256 of what arrived."""
    digest = hashlib.sha256()
    deadline = time.monotonic() + 10 * source.timeout_s
    request = urllib.request.Request(source.url, headers={"User-Agent": "lstm-ptq/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=source.timeout_s) as response, destination.open("wb") as out:
            expected_length = response.headers.get("Content-Length")
            received = 0
            while True:
                chunk = response.read1(CHUNK)  # one recv per call, so a trickling server meets the deadline
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if time.monotonic() > deadline:
                    raise DownloadError(f"{source.url}: download took longer than {10 * source.timeout_s:.0f} s")
            if expected_length is not None and received != int(expected_length):
                raise DownloadError(f"{source.url}: truncated body: received {received} of {expected_length} bytes")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{source.url}: HTTP {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise DownloadError(f"{source.url}: timed out after {source.timeout_s:g} s without data") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise DownloadError(f"{source.url}: timed out after {source.timeout_s:g} s without data") from None
        raise DownloadError(f"{source.url}: cannot connect ({reason})") from None
    except http.client.IncompleteRead as exc:
        raise DownloadError(f"{source.url}: truncated body: connection closed after {len(exc.partial)} bytes of the last read") from None
    except http.client.HTTPException as exc:  # e.g. BadStatusLine: the server does not speak HTTP
        raise DownloadError(f"{source.url}: invalid HTTP response ({exc!r})") from None
    except ConnectionError as exc:
        raise DownloadError(f"{source.url}: connection failed ({exc})") from None
    return digest.hexdigest()


def _safe_member_path(archive: str | Path, member: tarfile.TarInfo) -> PurePosixPath:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise DownloadError(f"{archive}: member {member.name!r} escapes the extraction directory; refusing the archive")
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise DownloadError(f"{archive}: member {member.name!r} is a {kind}; only regular files are accepted")
    return name


def extract_release(archive: Path, spec: DatasetSpec, origin: str | None = None) -> dict[str, bytes]:
    """Read train.csv, test.csv and classes.txt out of a release tarball, refusing unsafe members.

    Errors name ``origin`` (the URL it came from) when given, else the archive's path.
    """
    where = origin or str(archive)
    wanted = {f"{spec.archive_dir}/{name}": name for name in ("train.csv", "test.csv", "classes.txt")}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:  # vet the whole archive before reading anything from it
                _safe_member_path(where, member)
            for member in members:
                name = str(PurePosixPath(member.name))
                if name in wanted and member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    found[wanted[name]] = handle.read()
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as exc:
        raise DownloadError(f"{where}: not a readable tar archive ({exc})") from None
    missing = sorted(set(wanted) - {f"{spec.archive_dir}/{n}" for n in found})
    if missing:
        raise DownloadError(f"{where}: missing {missing}; expected the release layout {sorted(wanted)}")
    return found


def fetch_remote(spec: DatasetSpec, source: RemoteSource, staged: Path) -> None:
    archive = staged / "download.partial"
    actual = _stream_to_file(source, archive)
    if actual != source.sha256:
        raise DownloadError(f"{source.url}: SHA-256 mismatch: got {actual}, expected {source.sha256} (download.{spec.name}.remote.sha256)")
    files = extract_release(archive, spec, origin=source.url)
    archive.unlink()
    for name in ("train.csv", "test.csv"):
        where = f"{source.url}!{spec.archive_dir}/{name}"  # a str: Path() would fold "http://" to "http:/"
        parse_release_csv(where, decode_utf8(where, files[name]), spec.num_classes)
    where = f"{source.url}!{spec.archive_dir}/classes.txt"
    classes = [line.strip() for line in decode_utf8(where, files["classes.txt"]).splitlines() if line.strip()]
    if len(classes) != spec.num_classes:
        raise DownloadError(f"{source.url}: classes.txt lists {len(classes)} classes; expected {spec.num_classes}")
    for name, content in files.items():
        (staged / name).write_bytes(content)


def run_download(params: DownloadSettings, bundled_root: Path, out_dir: Path) -> None:
    """Build the release files for one dataset and swap them into ``out_dir`` atomically."""
    spec = dataset_spec(params.dataset)
    with staged_output(out_dir) as staged:
        if params.source == "bundled":
            materialize_bundled(spec, bundled_root, staged, params.bundled_test_fraction, params.seed, params.bundled_extra_train)
        else:
            assert params.remote is not None
            fetch_remote(spec, params.remote, staged)
