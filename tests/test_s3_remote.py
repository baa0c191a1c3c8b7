"""An S3 remote, through dvc-s3, against moto's standalone S3 server on 127.0.0.1 (a subprocess the test
starts on a free port and stops): the README's S3 commands, with ``endpointurl`` pointing at the server.

One clone trains the small profile's discriminative model and pushes outputs and run-cache; a clone of its
commit pulls and reruns nothing; a clone without ``dvc.lock`` restores the download stage from the pulled
run-cache (docs/scaling.md: which stages have run-cache entries).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dvc_project import DvcProject, ran_stages, snapshot_project
from test_run_cache import RUN_CACHED, clone, restored_stages, small_profile, unchanged_stages

pytestmark = pytest.mark.slow

BUCKET = "lstm-ptq"
TARGET = "train@dbpedia-discriminative"
CHAIN = {"fingerprints", "download@dbpedia", "tokenize@dbpedia", TARGET}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server with one empty bucket; stopped after the module's tests."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):  # the server imports moto's services first: a few seconds on a busy machine
            if server.poll() is not None:
                raise AssertionError(f"moto server exited {server.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(endpoint, timeout=5).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # TimeoutError: accepted, but not answered yet
                time.sleep(0.2)
        else:
            raise AssertionError(f"moto server did not answer on {endpoint}")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(
            Bucket=BUCKET
        )
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def bucket_keys(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def s3_clone(origin: DvcProject, base: Path) -> DvcProject:
    project = clone(origin, base)
    project.env.update(CREDENTIALS)
    return project


@pytest.fixture(scope="module")
def origin(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> DvcProject:
    """A repository whose default remote is the bucket, with the trained model committed and pushed."""
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("origin"), snapshot)
    project.env.update(CREDENTIALS)
    project.set_profile(small_profile(project.params()))
    project.dvc("remote", "add", "-d", "storage", f"s3://{BUCKET}/cache")
    project.dvc("remote", "modify", "storage", "endpointurl", s3_endpoint)
    assert ran_stages(project.dvc("repro", TARGET)) != []
    project.run("git", "add", "-A")
    project.run("git", "commit", "-q", "-m", "S3 remote, trained model")
    project.dvc("push", "--run-cache")
    return project


def test_push_puts_outputs_and_run_cache_in_the_bucket(origin: DvcProject, s3_endpoint: str) -> None:
    assert any(key.startswith("cache/files/md5/") for key in bucket_keys(s3_endpoint, "cache/files/"))
    assert bucket_keys(s3_endpoint, "cache/runs/")  # the download stage's entry at least


def test_clone_pulls_from_s3_and_recomputes_nothing(origin: DvcProject, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = s3_clone(origin, tmp_path_factory.mktemp("clone"))
    project.dvc("pull", "--run-cache", "--allow-missing")  # dvc.lock covers the target's chain only
    output = project.dvc("repro", TARGET)
    assert ran_stages(output) == [] and restored_stages(output) == []
    assert sorted(unchanged_stages(output)) == sorted(CHAIN)
    assert json.loads(project.dvc("status", "--json", TARGET, "--with-deps")) == {}
    model = "models/float/dbpedia/discriminative/model.pt"
    assert (project.root / model).read_bytes() == (origin.root / model).read_bytes()


def test_clone_without_lock_restores_from_the_s3_run_cache(origin: DvcProject, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = s3_clone(origin, tmp_path_factory.mktemp("no_lock"))
    project.run("git", "rm", "-q", "dvc.lock")
    project.dvc("repro", "fingerprints")
    download = "download@dbpedia"
    assert download in RUN_CACHED
    output = project.dvc("repro", "--pull", "--single-item", download)
    assert ran_stages(output) == [] and restored_stages(output) == [download]
