"""A copy of this project in a temporary git + DVC repository, driven through the real ``dvc`` CLI.

Set up the way DVC's own test suite does it: ``git init`` and a first commit, ``dvc init``, a fake HOME
with a git user, ``GIT_CONFIG_NOSYSTEM=1``, ``DVC_TEST=true`` and analytics off. Stage commands run
with this venv's ``bin`` first on PATH and ``PYTHONPATH=<copy>/src``, so they import the copy's package
rather than the editable install that points at the working tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What the data stages need; later stages' code lives in the same folders and comes along.
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".dvcignore")
PROJECT_DIRS = ("stages", "src", "data/bundled")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
_RUNNING_STAGE = re.compile(r"^Running stage '([^']+)'", re.MULTILINE)


def stage_name(address: str) -> str:
    """A stage's name from its DVC address: ``pipelines/quantize-ag_news-generative/dvc.yaml:quantize@x`` -> ``quantize@x``
    (the generator keeps names unique across the project's dvc.yaml files)."""
    return address.rpartition(":")[2]


def ran_stages(output: str) -> list[str]:
    """The stages a ``dvc repro`` output says it ran, in order, by name (whichever dvc.yaml defines them)."""
    return [stage_name(address) for address in _RUNNING_STAGE.findall(output)]


def _generator() -> Any:
    """scripts/generate_dvc_yaml.py, imported as a module."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import generate_dvc_yaml
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))
    return generate_dvc_yaml


def dvc_files(root: Path, name: str = "dvc.yaml") -> list[Path]:
    """The project's dvc.yaml files (or, with ``name="dvc.lock"``, the locks beside them): the generator's list."""
    return _generator().project_files(root, name)


def hash_files(root: Path, *relative: str) -> dict[str, str]:
    """SHA-256 of every file under each ``relative`` path (file or directory), keyed by path from ``root``."""
    digests = {}
    for rel in relative:
        top = root / rel
        if not top.exists():
            raise FileNotFoundError(top)
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in paths:
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def snapshot_project(dest: Path) -> Path:
    """Copy what the pipeline needs from the working tree once, so that every repository a test module
    builds starts from the same files even while the working tree is being edited.

    The copy runs the main tree only: params.yaml's ``trees`` (the seed and setting trees of the default
    study, several hundred stages) are emptied and dvc.yaml is regenerated for that, so each ``dvc`` command
    of a test resolves the stages it exercises and not the study's trees. Tests of the trees declare their own."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy2(PROJECT_ROOT / name, dest / name)
    for name in PROJECT_DIRS:
        shutil.copytree(PROJECT_ROOT / name, dest / name, ignore=_IGNORED)
    params = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
    params["trees"] = {}
    write_params(dest, params)
    return dest


def write_params(root: Path, params: dict[str, Any]) -> None:
    """Write params.yaml and the dvc.yaml files that scripts/generate_dvc_yaml.py derives from it (the main one
    and one per tree: the trees' stages and the params each stage declares follow params.yaml)."""
    generator = _generator()
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    generator.write_files(generator.generate(root / "params.yaml"), root)


def isolated_env(home: Path, repo: Path, hash_seed: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "DVC_", "XDG_", "LSTM_PTQ_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        DVC_TEST="true",
        DVC_NO_ANALYTICS="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(repo / "src"),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONHASHSEED=hash_seed,
        # One thread per stage process: the tests share 2 cores with each other (pytest-xdist) and a stage
        # with 2 threads on a busy core runs many times slower (oversubscription), not faster.
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    # The warm stage runner as the suite runs (./run turns it on): one runner per project, since the
    # project's HOME and package copy are part of a runner's key (lstm_ptq/warm.py).
    env["LSTM_PTQ_WARM"] = os.environ.get("LSTM_PTQ_WARM", "0")
    return env


@dataclass
class DvcProject:
    root: Path
    env: dict[str, str]

    @classmethod
    def create(cls, base: Path, source: Path, hash_seed: str = "0") -> DvcProject:
        """Copy ``source`` (a :func:`snapshot_project`) into ``base/repo``, commit it, ``dvc init``, commit again."""
        home, repo = base / "home", base / "repo"
        home.mkdir(parents=True)
        shutil.copytree(source, repo)
        project = cls(repo, isolated_env(home, repo, hash_seed))
        project.run("git", "config", "--global", "user.name", "DVC Tester")
        project.run("git", "config", "--global", "user.email", "dvctester@example.com")
        project.run("git", "config", "--global", "init.defaultBranch", "main")
        project.run("git", "init", "-q")
        project.run("git", "add", "-A")
        project.run("git", "commit", "-q", "-m", "project")
        project.dvc("init", "-q")
        project.dvc("config", "core.analytics", "false")
        # DVC's state and index databases go inside the temporary tree, not /var/tmp.
        project.dvc("config", "--local", "core.site_cache_dir", str(base / "site_cache"))
        project.run("git", "add", "-A")
        project.run("git", "commit", "-q", "-m", "dvc init")
        imported = project.run(sys.executable, "-c", "import lstm_ptq; print(lstm_ptq.__file__)").strip()
        if not Path(imported).resolve().is_relative_to(repo.resolve()):
            raise AssertionError(f"stage commands would import lstm_ptq from {imported}, not from the copy in {repo}")
        return project

    def run(self, *args: str) -> str:
        """Run a command in the repository; return stdout and stderr together, failing on a non-zero exit."""
        result = subprocess.run(args, cwd=self.root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            raise AssertionError(f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout}")
        return result.stdout

    def dvc(self, *args: str) -> str:
        """A dvc command as ``./run dvc`` runs it: with the project's speed-ups of DVC's bookkeeping."""
        return self.run(sys.executable, "-m", "lstm_ptq.dvc_cli", *args)

    def plain_dvc(self, *args: str) -> str:
        """A dvc command of DVC as installed."""
        return self.run(sys.executable, "-m", "dvc", *args)

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "params.yaml").read_text(encoding="utf-8"))

    def set_params(self, params: dict[str, Any]) -> None:
        """Rewrite params.yaml; DVC compares parameter values, so comments and layout do not matter."""
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    def set_profile(self, params: dict[str, Any]) -> None:
        """Rewrite params.yaml and regenerate the dvc.yaml files from it, as the README asks after a change of
        the datasets or model types (the calibrate family has a dvc.yaml per dataset and model type)."""
        write_params(self.root, params)

    def lock(self) -> dict[str, Any]:
        """Every dvc.lock of the project merged: ``{"stages": {name: entry}}``."""
        stages = {}
        for path in dvc_files(self.root, "dvc.lock"):
            stages.update(yaml.safe_load(path.read_text(encoding="utf-8")).get("stages") or {})
        return {"stages": stages}

    def address(self, stage: str) -> str:
        """How DVC addresses ``stage`` (a name, ``calibrate@x``, or a glob of names within one dvc.yaml): with
        its dvc.yaml's path unless the root dvc.yaml defines it. A stage of a split family (calibrate, one
        file per dataset and model type) is found by the values its name starts with."""
        generator = _generator()
        files = {path.relative_to(self.root).as_posix(): path.read_text(encoding="utf-8") for path in dvc_files(self.root)}
        base = stage.split("@")[0]
        defining = [path for path, text in files.items() if base in (yaml.safe_load(text).get("stages") or {})]
        if len(defining) > 1:
            home = generator.lock_home(generator.entry_homes({path: files[path] for path in defining}), stage)
            if home is None:
                raise KeyError(f"{stage!r} matches stages of several dvc.yaml files ({', '.join(defining)}): name one cell, or a pattern within one file")
            defining = [str(PurePosixPath(home).with_name("dvc.yaml"))]
        if not defining:
            raise KeyError(f"no dvc.yaml of {self.root} defines stage {base!r}")
        return stage if defining[0] == "dvc.yaml" else f"{defining[0]}:{stage}"
