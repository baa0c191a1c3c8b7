"""The data stages (``download@*``, ``tokenize@*``) run through the real ``dvc`` CLI in temporary repos.

Only ``dvc repro tokenize`` (all tokenize@* cells and their upstream) is reproduced, so these tests keep
working as later stages are added to dvc.yaml. One repository is shared by the module; a second, fresh
one checks that a rebuild from scratch gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from dvc_project import DvcProject, hash_files, ran_stages, snapshot_project

pytestmark = pytest.mark.slow

RAW_FILES = ("train.csv", "test.csv", "classes.txt")
TOKENIZED_FILES = ("train.npz", "valid.npz", "test.npz", "vocab.json")


@dataclass(frozen=True)
class Reproduced:
    """A repository after its first ``dvc repro tokenize``."""

    project: DvcProject
    output: str
    datasets: tuple[str, ...]
    hashes: dict[str, str]  # every file of every data output and tokenize metric, as first built

    def stages(self, name: str) -> set[str]:
        return {f"{name}@{dataset}" for dataset in self.datasets}

    @property
    def raw_outs(self) -> list[str]:
        return [f"data/raw/{d}" for d in self.datasets]

    @property
    def tokenized_outs(self) -> list[str]:
        return [f"data/tokenized/{d}" for d in self.datasets]

    @property
    def metric_files(self) -> list[str]:
        return [f"metrics/tokenize/{d}.json" for d in self.datasets]


def reproduce(base: Path, source: Path, hash_seed: str) -> Reproduced:
    project = DvcProject.create(base, source, hash_seed=hash_seed)
    datasets = tuple(project.params()["grid"]["datasets"])
    assert {"ag_news", "dbpedia"} <= set(datasets)
    output = project.dvc("repro", "tokenize")
    outs = [f"data/{kind}/{d}" for kind in ("raw", "tokenized") for d in datasets]
    return Reproduced(project, output, datasets, hash_files(project.root, *outs, *(f"metrics/tokenize/{d}.json" for d in datasets)))


def vocabulary(project: DvcProject, dataset: str) -> list[str]:
    return json.loads((project.root / "data/tokenized" / dataset / "vocab.json").read_text(encoding="utf-8"))


def pipeline_status(repo: Reproduced) -> dict:
    """``dvc status`` of the tokenize stages and everything upstream; ``{}`` means up to date."""
    return json.loads(repo.project.dvc("status", "--json", "--with-deps", "tokenize"))


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory, snapshot: Path) -> Reproduced:
    return reproduce(tmp_path_factory.mktemp("first"), snapshot, hash_seed="0")


def test_repro_builds_every_data_output(first: Reproduced) -> None:
    root = first.project.root
    assert sorted(ran_stages(first.output)) == sorted(first.stages("download") | first.stages("tokenize") | {"fingerprints"})
    for dataset in first.datasets:
        for name in RAW_FILES:
            assert (root / "data/raw" / dataset / name).stat().st_size > 0, f"data/raw/{dataset}/{name}"
        for name in TOKENIZED_FILES:
            assert (root / "data/tokenized" / dataset / name).stat().st_size > 0, f"data/tokenized/{dataset}/{name}"
    # Staging and backup directories of the atomic swap must not outlive the stage.
    for parent in ("data/raw", "data/tokenized"):
        assert {p.name for p in (root / parent).iterdir()} == {".gitignore", *first.datasets}

    shown = json.loads(first.project.dvc("metrics", "show", "--json", *first.metric_files))
    for dataset, path in zip(first.datasets, first.metric_files):
        metrics = shown[""]["data"][path]["data"]
        assert metrics["dataset"] == dataset
        assert metrics["vocab_size"] == len(vocabulary(first.project, dataset)) > 4
    assert pipeline_status(first) == {}


def test_second_repro_runs_nothing(first: Reproduced) -> None:
    before = hash_files(first.project.root, *first.raw_outs, *first.tokenized_outs, *first.metric_files)
    output = first.project.dvc("repro", "tokenize")
    assert ran_stages(output) == []
    for stage in first.stages("download") | first.stages("tokenize"):
        assert f"Stage '{stage}' didn't change, skipping" in output
    assert pipeline_status(first) == {}
    assert hash_files(first.project.root, *first.raw_outs, *first.tokenized_outs, *first.metric_files) == before


def test_tokenize_param_change_reruns_only_tokenize(first: Reproduced) -> None:
    project = first.project
    raw_before = hash_files(project.root, *first.raw_outs)
    vocab_before = {d: vocabulary(project, d) for d in first.datasets}
    # A smaller cap shrinks every vocabulary to exactly the cap, whatever min_freq and the old cap were;
    # a higher min_freq would leave a vocabulary already cut off by max_vocab_size unchanged.
    max_vocab_size = min(len(v) for v in vocab_before.values()) // 2
    assert max_vocab_size > 4
    params = project.params()
    params["tokenize"]["max_vocab_size"] = max_vocab_size
    project.set_params(params)

    assert set(pipeline_status(first)) == first.stages("tokenize")
    output = project.dvc("repro", "tokenize")
    assert sorted(ran_stages(output)) == sorted(first.stages("tokenize"))
    assert hash_files(project.root, *first.raw_outs) == raw_before
    for dataset in first.datasets:
        # The vocabulary is frequency-ranked: a lower cap keeps its head and changes nothing in it.
        assert vocabulary(project, dataset) == vocab_before[dataset][:max_vocab_size], dataset
        metrics = json.loads((project.root / "metrics/tokenize" / f"{dataset}.json").read_text(encoding="utf-8"))
        assert metrics["vocab_size"] == max_vocab_size
    assert pipeline_status(first) == {}


def test_fresh_repo_rebuilds_byte_identical_outputs(first: Reproduced, snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # A different hash seed as well: no output may depend on the iteration order of a set of strings.
    second = reproduce(tmp_path_factory.mktemp("second"), snapshot, hash_seed="1")
    assert second.datasets == first.datasets
    assert sorted(ran_stages(second.output)) == sorted(first.stages("download") | first.stages("tokenize") | {"fingerprints"})
    assert second.hashes == first.hashes


def test_push_then_pull_restores_identical_files(first: Reproduced, tmp_path_factory: pytest.TempPathFactory) -> None:
    project = first.project
    project.dvc("repro", "tokenize")  # a no-op unless an earlier test failed half way
    outs = [*first.raw_outs, *first.tokenized_outs]
    remote = tmp_path_factory.mktemp("remote")
    project.dvc("remote", "add", "-d", "local", str(remote))
    project.dvc("push", "--with-deps", "tokenize")

    assert any(p.is_file() for p in remote.rglob("*")), "dvc push left the remote empty"
    locked = [out for stage in project.lock()["stages"].values() for out in stage.get("outs", []) if out["path"] in outs]
    assert sorted(out["path"] for out in locked) == sorted(outs)
    for out in locked:
        manifest = remote / "files/md5" / out["md5"][:2] / out["md5"][2:]
        assert manifest.is_file(), f"{out['path']}: directory manifest {out['md5']} not on the remote"
        entries = json.loads(manifest.read_text(encoding="utf-8"))
        assert len(entries) == out["nfiles"] > 0
        for entry in entries:
            assert (remote / "files/md5" / entry["md5"][:2] / entry["md5"][2:]).is_file(), f"{out['path']}/{entry['relpath']}"

    before = hash_files(project.root, *outs)
    shutil.rmtree(project.root / ".dvc/cache")
    shutil.rmtree(project.root / "data/raw")
    shutil.rmtree(project.root / "data/tokenized")
    project.dvc("pull", "--with-deps", "tokenize")
    assert hash_files(project.root, *outs) == before
    assert pipeline_status(first) == {}
