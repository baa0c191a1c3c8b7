"""A DVC remote set up as README's "Sharing artifacts" section says (``dvc remote add -d``, then
``dvc remote modify <name> verify true``) cannot poison the cache: ``dvc pull`` of a file corrupted on
the remote fails, nothing of it reaches the cache or the workspace, and the stage is rebuilt from its
inputs. Without ``verify`` DVC pulls the same file with exit 0, reports the stage up to date and would
run the next stage on it, so the setting is what protects.

One cheap stage, ``download@dbpedia`` (a directory output of three files), in a temporary repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from dvc_project import DvcProject, hash_files, ran_stages, snapshot_project

pytestmark = pytest.mark.slow

STAGE, DOWNSTREAM = "download@dbpedia", "tokenize@dbpedia"
OUT = "data/raw/dbpedia"
CORRUPTED = "train.csv"  # the member of OUT whose object is damaged on the remote


@dataclass(frozen=True)
class CorruptRemote:
    """A repository whose ``OUT`` was pushed to ``remote`` and whose ``CORRUPTED`` object there was then damaged."""

    project: DvcProject
    built: dict[str, str]  # hash_files of OUT as the stage built it
    md5: str  # the object's name on the remote and in the cache: the md5 of the true content, from the directory's manifest
    corrupt: bytes  # what the remote now holds under that name

    @property
    def workspace_file(self) -> Path:
        return self.project.root / OUT / CORRUPTED

    def forget_local_copies(self) -> None:
        """Another machine: no cache and no output, only the git repository and the remote."""
        shutil.rmtree(self.project.root / ".dvc/cache", ignore_errors=True)
        shutil.rmtree(self.project.root / OUT, ignore_errors=True)

    def dvc_exit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A ``dvc`` command whose failure is the expected outcome."""
        return subprocess.run(
            [sys.executable, "-m", "dvc", *args], cwd=self.project.root, env=self.project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )


def object_path(root: Path, md5: str) -> Path:
    return root / "files/md5" / md5[:2] / md5[2:]


@pytest.fixture(scope="module")
def corrupt_remote(tmp_path_factory: pytest.TempPathFactory) -> CorruptRemote:
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("verify"), snapshot)
    project.dvc("repro", STAGE)
    remote = tmp_path_factory.mktemp("remote")
    project.dvc("remote", "add", "-d", "storage", str(remote))
    project.dvc("remote", "modify", "storage", "verify", "true")
    project.dvc("remote", "add", "unverified", str(remote))  # the same directory, DVC's default: no verification
    project.dvc("push", STAGE)

    (out,) = project.lock()["stages"][STAGE]["outs"]
    manifest = json.loads(object_path(remote, out["md5"]).read_text(encoding="utf-8"))
    md5 = next(entry["md5"] for entry in manifest if entry["relpath"] == CORRUPTED)
    stored = object_path(remote, md5)
    original = stored.read_bytes()
    corrupt = original[:100] + original[100:400].swapcase() + original[400:]  # bit rot that keeps the size and the CSV valid
    assert corrupt != original and len(corrupt) == len(original)
    stored.chmod(0o644)
    stored.write_bytes(corrupt)
    return CorruptRemote(project, hash_files(project.root, OUT), md5, corrupt)


def test_verified_pull_fails_and_the_stage_is_rebuilt_from_its_inputs(corrupt_remote: CorruptRemote) -> None:
    project = corrupt_remote.project
    assert project.dvc("config", "remote.storage.verify").strip() == "true"
    corrupt_remote.forget_local_copies()

    pulled = corrupt_remote.dvc_exit("pull", STAGE)
    assert pulled.returncode != 0, pulled.stdout
    assert not corrupt_remote.workspace_file.exists(), "the corrupted file reached the workspace"
    assert not object_path(project.root / ".dvc/cache", corrupt_remote.md5).exists(), "the corrupted file reached the cache"
    # Not up to date, so `dvc repro` reruns the stage from its inputs before any downstream stage runs.
    assert json.loads(project.dvc("status", "--json", STAGE)) == {STAGE: [{"changed outs": {OUT: "not in cache"}}]}
    assert ran_stages(project.dvc("repro", STAGE)) == [STAGE]
    assert hash_files(project.root, OUT) == corrupt_remote.built


def test_unverified_pull_takes_the_corrupted_file_and_calls_it_up_to_date(corrupt_remote: CorruptRemote) -> None:
    project = corrupt_remote.project
    corrupt_remote.forget_local_copies()

    project.dvc("pull", "--remote", "unverified", STAGE)  # exit 0
    assert corrupt_remote.workspace_file.read_bytes() == corrupt_remote.corrupt
    assert json.loads(project.dvc("status", "--json", STAGE)) == {}
    planned = project.dvc("repro", "--dry", DOWNSTREAM)
    assert f"Stage '{STAGE}' didn't change, skipping" in planned
    assert ran_stages(planned) == [DOWNSTREAM], planned  # tokenize would read the corrupted train.csv
