"""The download stage: bundled real rows, and the release archive over real HTTP on 127.0.0.1.

Every failure must raise a clear error, leave nothing beside the output directory, and leave a
previously good output directory byte-identical.
"""

import gzip
import hashlib
import io
import os
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from lstm_ptq.datasets import DATASETS, read_release_csv
from lstm_ptq.download import materialize_bundled, run_download
from lstm_ptq.errors import DataError, DownloadError, ParamError
from lstm_ptq.settings import DownloadSettings, RemoteSource

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled"
SEED = 2025


@cache
def bundled_bytes(dataset: str, name: str) -> bytes:
    """A bundled release file, decompressed."""
    return gzip.decompress((BUNDLED / dataset / f"{name}.gz").read_bytes())


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_only_output_beside(out_dir: Path) -> None:
    """No staging directory, backup or partial download is left next to the output."""
    assert sorted(os.listdir(out_dir.parent)) == [out_dir.name]


# --- bundled source ---------------------------------------------------------------------------


def test_bundled_ag_news_is_the_decompressed_release(tmp_path):
    out_dir = tmp_path / "raw" / "ag_news"
    run_download(DownloadSettings("ag_news", "bundled", None, None, SEED), BUNDLED, out_dir)
    assert snapshot(out_dir) == {
        "classes.txt": (BUNDLED / "ag_news" / "classes.txt").read_bytes(),
        "test.csv": bundled_bytes("ag_news", "test.csv"),
        "train.csv": bundled_bytes("ag_news", "train.csv"),
    }
    assert_only_output_beside(out_dir)


def lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)  # bundled DBPedia rows are one line each


def test_bundled_dbpedia_test_split_is_stratified_disjoint_and_in_file_order(tmp_path):
    out_dir = tmp_path / "raw" / "dbpedia"
    run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, SEED), BUNDLED, out_dir)
    assert sorted(os.listdir(out_dir)) == ["classes.txt", "test.csv", "train.csv"]
    bundled = lines(bundled_bytes("dbpedia", "train.csv"))
    position = {row: i for i, row in enumerate(bundled)}
    assert len(position) == 5000  # rows are unique, so disjointness can be checked on the lines
    train = lines((out_dir / "train.csv").read_bytes())
    test = lines((out_dir / "test.csv").read_bytes())
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(bundled)
    for split in (train, test):
        rows = [position[row] for row in split]
        assert rows == sorted(rows)

    per_class = np.bincount([d.label for d in read_release_csv(out_dir / "train.csv", 14)], minlength=14)
    held = np.bincount([d.label for d in read_release_csv(out_dir / "test.csv", 14)], minlength=14)
    bundled_per_class = [334, 351, 376, 388, 352, 356, 388, 367, 336, 336, 388, 359, 349, 320]
    np.testing.assert_array_equal(held, np.round(0.2 * np.array(bundled_per_class)))
    np.testing.assert_array_equal(per_class + held, bundled_per_class)
    assert_only_output_beside(out_dir)


def test_bundled_dbpedia_split_depends_only_on_the_seed(tmp_path):
    outputs = {}
    for name, seed in [("a", SEED), ("b", SEED), ("c", SEED + 1)]:
        run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, seed), BUNDLED, tmp_path / name / "dbpedia")
        outputs[name] = snapshot(tmp_path / name / "dbpedia")
    assert outputs["a"] == outputs["b"]
    assert outputs["a"]["test.csv"] != outputs["c"]["test.csv"]


def test_bundled_dbpedia_without_a_test_fraction_is_a_param_error(tmp_path):
    with pytest.raises(ParamError, match=r"^download\.dbpedia\.bundled_test_fraction: required"):
        run_download(DownloadSettings("dbpedia", "bundled", None, None, SEED), BUNDLED, tmp_path / "dbpedia")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def bundled_copy(tmp_path) -> Path:
    copy = tmp_path / "bundled"
    shutil.copytree(BUNDLED, copy)
    return copy


@pytest.fixture
def good_dbpedia(tmp_path, bundled_copy) -> Path:
    out_dir = tmp_path / "raw" / "dbpedia"
    run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, SEED), bundled_copy, out_dir)
    return out_dir


def test_tampered_bundled_content_is_refused_by_sha256sums(bundled_copy, good_dbpedia):
    before = snapshot(good_dbpedia)
    gz = bundled_copy / "dbpedia" / "train.csv.gz"
    content = bytearray(gzip.decompress(gz.read_bytes()))
    content[content.index(b"Christmas")] = ord("K")  # one byte of one title
    gz.write_bytes(gzip.compress(bytes(content)))
    expected = (
        re.escape(f"{gz}: decompressed SHA-256 ")
        + "[0-9a-f]{64}"
        + re.escape(" does not match SHA256SUMS (74f8ecd051c3cfd167c8e9c3e69f976dcad12fd927be989c0f15bfba064d6cd9)")
    )
    with pytest.raises(DataError, match=f"^{expected}$"):
        run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, SEED), bundled_copy, good_dbpedia)
    assert snapshot(good_dbpedia) == before
    assert_only_output_beside(good_dbpedia)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda gz: gz[:10] + b"\xff" + gz[11:], "invalid block type"),  # reserved deflate block type
        (lambda gz: gz[: len(gz) // 2], "Compressed file ended"),
        (lambda gz: b"not gzip at all", "Not a gzipped file"),
    ],
    ids=["bad-deflate-block", "truncated", "not-gzip"],
)
def test_damaged_gzip_is_a_data_error(bundled_copy, good_dbpedia, damage, message):
    before = snapshot(good_dbpedia)
    gz = bundled_copy / "dbpedia" / "train.csv.gz"
    gz.write_bytes(damage(gz.read_bytes()))
    with pytest.raises(DataError, match=f"^{re.escape(str(gz))}: not a valid gzip file .*{message}"):
        run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, SEED), bundled_copy, good_dbpedia)
    assert snapshot(good_dbpedia) == before
    assert_only_output_beside(good_dbpedia)


def test_file_missing_from_sha256sums_is_refused(bundled_copy, good_dbpedia):
    before = snapshot(good_dbpedia)
    sums = bundled_copy / "SHA256SUMS"
    sums.write_text("".join(line for line in sums.read_text().splitlines(keepends=True) if "dbpedia/train.csv" not in line))
    with pytest.raises(DataError, match=f"^{re.escape(str(sums))}: no checksum listed for dbpedia/train.csv$"):
        run_download(DownloadSettings("dbpedia", "bundled", None, 0.2, SEED), bundled_copy, good_dbpedia)
    assert snapshot(good_dbpedia) == before


# --- remote source over loopback HTTP ---------------------------------------------------------

Route = Callable[[BaseHTTPRequestHandler], None]


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 whose paths answer with test-chosen behaviour."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.release = threading.Event()  # wakes handlers that stall
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                try:
                    route(self)
                except OSError:  # the client gave up (timeouts): nothing to report
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    server = LoopbackServer()
    yield server
    server.close()


def serve(body: bytes, declared_length: int | None = None) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/gzip")
        handler.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        handler.end_headers()
        handler.wfile.write(body)

    return route


RELEASE_ROWS = {"train.csv": 300, "test.csv": 100}


@cache
def release_files() -> tuple[tuple[str, bytes], ...]:
    """ag_news_csv/* as in the real archive, made of the first real rows of the bundled files."""
    files = {name: b"".join(bundled_bytes("ag_news", name).splitlines(keepends=True)[:rows]) for name, rows in RELEASE_ROWS.items()}
    files["classes.txt"] = (BUNDLED / "ag_news" / "classes.txt").read_bytes()
    files["readme.txt"] = b"AG's News Topic Classification Dataset\n"
    return tuple(files.items())


def release_archive(*, omit: tuple[str, ...] = (), extra: tuple[tarfile.TarInfo, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo("ag_news_csv")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, data in release_files():
            if name not in omit:
                info = tarfile.TarInfo(f"ag_news_csv/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remote(url: str, digest: str, timeout_s: float = 5.0) -> DownloadSettings:
    return DownloadSettings("ag_news", "remote", RemoteSource(url, digest, timeout_s), None, SEED)


EXPECTED_OUTPUT = {name: data for name, data in release_files() if name != "readme.txt"}


def test_remote_release_is_written_byte_for_byte(tmp_path, server):
    archive = release_archive()
    server.routes["/ag_news_csv.tgz"] = serve(archive)
    params = DownloadSettings.from_params(
        {
            "seed": SEED,
            "download": {
                "ag_news": {
                    "source": "remote",
                    "remote": {"url": server.url("/ag_news_csv.tgz"), "sha256": sha256(archive), "timeout_s": 5},
                }
            },
        },
        "ag_news",
    )
    out_dir = tmp_path / "raw" / "ag_news"
    out_dir.mkdir(parents=True)
    (out_dir / "stale.csv").write_bytes(b"from an older run\n")
    run_download(params, BUNDLED, out_dir)
    assert snapshot(out_dir) == EXPECTED_OUTPUT
    assert [len(read_release_csv(out_dir / name, 4)) for name in ("train.csv", "test.csv")] == [300, 100]
    assert_only_output_beside(out_dir)


def test_file_url_is_fetched_the_same_way(tmp_path):
    archive_path = tmp_path / "ag_news_csv.tgz"
    archive_path.write_bytes(release_archive())
    out_dir = tmp_path / "raw" / "ag_news"
    run_download(remote(archive_path.as_uri(), sha256(archive_path.read_bytes())), BUNDLED, out_dir)
    assert snapshot(out_dir) == EXPECTED_OUTPUT


@pytest.fixture
def good_ag_news(tmp_path, server) -> Path:
    """A previously good data/raw/ag_news, fetched from the loopback server."""
    archive = release_archive()
    server.routes["/good.tgz"] = serve(archive)
    out_dir = tmp_path / "raw" / "ag_news"
    run_download(remote(server.url("/good.tgz"), sha256(archive)), BUNDLED, out_dir)
    assert snapshot(out_dir) == EXPECTED_OUTPUT
    return out_dir


def assert_refused(params: DownloadSettings, out_dir: Path, message: str, error: type[Exception] = DownloadError) -> None:
    with pytest.raises(error, match=message):
        run_download(params, BUNDLED, out_dir)
    assert snapshot(out_dir) == EXPECTED_OUTPUT
    assert_only_output_beside(out_dir)


def test_wrong_sha256_is_refused(server, good_ag_news):
    archive = release_archive()
    server.routes["/a.tgz"] = serve(archive)
    url = server.url("/a.tgz")
    expected = (
        f"^{re.escape(url)}: SHA-256 mismatch: got {sha256(archive)}, expected {'0' * 64} "
        r"\(download\.ag_news\.remote\.sha256\)$"
    )
    assert_refused(remote(url, "0" * 64), good_ag_news, expected)


def test_truncated_body_is_refused(server, good_ag_news):
    archive = release_archive()
    server.routes["/a.tgz"] = serve(archive, declared_length=len(archive) + 1000)
    url = server.url("/a.tgz")
    expected = f"^{re.escape(url)}: truncated body: received {len(archive)} of {len(archive) + 1000} bytes$"
    assert_refused(remote(url, sha256(archive)), good_ag_news, expected)


def test_http_404_is_refused(server, good_ag_news):
    url = server.url("/missing.tgz")
    assert_refused(remote(url, "0" * 64), good_ag_news, f"^{re.escape(url)}: HTTP 404 Not Found$")


def test_non_http_answer_is_refused(server, good_ag_news):
    server.routes["/a.tgz"] = lambda handler: handler.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    url = server.url("/a.tgz")
    assert_refused(remote(url, "0" * 64), good_ag_news, f"^{re.escape(url)}: invalid HTTP response \\(BadStatusLine")


def test_closed_port_is_refused(server, good_ag_news):
    url = server.url("/a.tgz")
    server.close()  # nothing listens on that port any more
    assert_refused(remote(url, "0" * 64), good_ag_news, f"^{re.escape(url)}: cannot connect")


def test_stalled_server_times_out(server, good_ag_news):
    def stall(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"\x1f\x8b")
        handler.wfile.flush()
        server.release.wait(10)

    server.routes["/a.tgz"] = stall
    url = server.url("/a.tgz")
    started = time.monotonic()
    assert_refused(remote(url, "0" * 64, timeout_s=1), good_ag_news, f"^{re.escape(url)}: timed out after 1 s without data$")
    assert time.monotonic() - started < 5


def test_trickling_server_meets_the_overall_deadline(server, good_ag_news):
    """One byte every 50 ms never trips the 0.2 s socket timeout; the 10 x timeout deadline must."""

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**6))
        handler.end_headers()
        stop = time.monotonic() + 8
        while time.monotonic() < stop and not server.release.is_set():
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.05)

    server.routes["/a.tgz"] = trickle
    url = server.url("/a.tgz")
    started = time.monotonic()
    assert_refused(remote(url, "0" * 64, timeout_s=0.2), good_ag_news, f"^{re.escape(url)}: download took longer than 2 s$")
    assert time.monotonic() - started < 5


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.size = 4 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "archive, message",
    [
        (
            lambda: release_archive(extra=(tar_member("../evil"),)),
            r"member '\.\./evil' escapes the extraction directory; refusing the archive$",
        ),
        (
            lambda: release_archive(extra=(tar_member("/etc/evil"),)),
            r"member '/etc/evil' escapes the extraction directory",
        ),
        (
            lambda: release_archive(extra=(tar_member("ag_news_csv/link", tarfile.SYMTYPE, "/etc/passwd"),)),
            r"member 'ag_news_csv/link' is a link; only regular files are accepted$",
        ),
        (
            lambda: release_archive(omit=("test.csv",), extra=(tar_member("ag_news_csv/test.csv", tarfile.SYMTYPE, "train.csv"),)),
            r"member 'ag_news_csv/test.csv' is a link",
        ),
        (
            lambda: release_archive(omit=("test.csv",)),
            r"missing \['ag_news_csv/test\.csv'\]; expected the release layout "
            r"\['ag_news_csv/classes\.txt', 'ag_news_csv/test\.csv', 'ag_news_csv/train\.csv'\]$",
        ),
        (lambda: b"<html>not an archive</html>", r"not a readable tar archive"),
    ],
    ids=["parent-path", "absolute-path", "symlink", "test-csv-as-symlink", "missing-test-csv", "not-a-tar"],
)
def test_unsafe_or_incomplete_archive_is_refused(server, good_ag_news, archive, message):
    body = archive()
    server.routes["/a.tgz"] = serve(body)
    url = server.url("/a.tgz")
    assert_refused(remote(url, sha256(body)), good_ag_news, f"^{re.escape(url)}: {message}")


def test_malformed_csv_inside_the_archive_names_url_and_member(server, good_ag_news):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in release_files():
            if name == "train.csv":
                data = data + b'"9","title","text"\n'
            info = tarfile.TarInfo(f"ag_news_csv/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buffer.getvalue()
    server.routes["/a.tgz"] = serve(body)
    url = server.url("/a.tgz")
    expected = f"^{re.escape(url)}!ag_news_csv/train.csv: line 301: class index 9 is out of range; expected 1..4$"
    assert_refused(remote(url, sha256(body)), good_ag_news, expected, error=DataError)


def test_bundled_extra_train_rows_join_the_training_split_only(tmp_path: Path) -> None:
    from lstm_ptq.download import read_bundled_csv

    bundled = Path(__file__).resolve().parents[1] / "data" / "bundled"
    spec = DATASETS["ag_news"]
    materialize_bundled(spec, bundled, tmp_path, None, 7, extra_train=True)
    train = read_release_csv(tmp_path / "train.csv", 4)
    base = read_bundled_csv(bundled, spec, "train.csv")
    extra = read_bundled_csv(bundled, spec, spec.extra_train_file)
    assert train == base + extra and len(extra) == 15895
    assert all(doc.title == "" for doc in train[len(base) :])
    assert (tmp_path / "test.csv").read_bytes() == gzip.decompress((bundled / "ag_news" / "test.csv.gz").read_bytes())
