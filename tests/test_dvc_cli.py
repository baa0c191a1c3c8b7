"""``lstm_ptq.dvc_cli``: DVC with the project's two speed-ups gives DVC's own answers.

Each replaced function is compared with the original on the same inputs (every kind of params key, changed
and broken files; every kind of in-memory path), and a real DVC project in a temporary git repo gets the same
``dvc status`` and ``dvc params diff`` from both entry points after its params change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dvc.dependency.param as param
import pytest
from dvc.fs import LocalFileSystem
from dvc_project import isolated_env
from fsspec.implementations.memory import MemoryFileSystem

from lstm_ptq import dvc_cli

REPO = Path(__file__).resolve().parents[1]

PARAMS_YAML = """\
seed: 2025
grid:
  datasets: [ag_news, dbpedia]
  bit_widths: [8, 4]
train:
  learning_rate: 0.001
  discriminative: {max_epochs: 15, patience: 3}
  generative: {max_epochs: 2}
  empty: {}
  none_value: null
numbers:
  1: one
  "1": string one
  2: two
dotted:
  a.b: inner
lists:
  - {name: first}
  - {name: second}
"""

# Every kind of key: plain leaves and subtrees, lists and list indices, globs (one match, several, none),
# integer keys and a string key that equals one's str(), a key holding a dot, empty segments, missing keys.
KEYS = [
    "seed",
    "grid",
    "grid.datasets",
    "grid.datasets.0",
    "grid.bit_widths.1",
    "train.learning_rate",
    "train.discriminative",
    "train.discriminative.max_epochs",
    "train.empty",
    "train.none_value",
    "train.*.patience",
    "train.*.max_epochs",
    "train.gen*",
    "train.[dg]enerative.max_epochs",
    "numbers.2",
    "numbers.1",
    "dotted.a.b",
    "lists.0.name",
    "lists",
    "missing",
    "train.missing",
    "seed.deeper",
    "train..learning_rate",
    ".seed",
    "grid.",
    "grid.datasets.5",
]


def outcome(function: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    """The value returned, or the type and message of the exception raised."""
    try:
        return ("value", function(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - what is compared is the exception itself
        return (type(exc).__name__, str(exc))


def original_reader() -> Any:
    return getattr(param.read_param_file, "original", param.read_param_file)


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS_YAML, encoding="utf-8")
    return path


def test_params_reader_returns_what_dvc_returns_for_every_kind_of_key(params_file: Path) -> None:
    fs = LocalFileSystem()
    original = original_reader()
    fast = dvc_cli.params_reader(original, dvc_cli.ParsedParams())
    for key in KEYS:
        expected = outcome(original, fs, str(params_file), [key], flatten=True)
        assert outcome(fast, fs, str(params_file), [key], flatten=True) == expected, key
    readable = [key for key in KEYS if outcome(original, fs, str(params_file), [key], flatten=True)[0] == "value"]
    # The fallback's cases that dpath answers with a value: a glob, an integer key, a list index, a leading dot.
    assert {"train.*.patience", "numbers.2", "grid.datasets.0", ".seed"} <= set(readable)
    assert {"numbers.1", "train.*.max_epochs"}.isdisjoint(readable)  # dpath: several matches, an error
    assert fast(fs, str(params_file), readable, flatten=True) == original(fs, str(params_file), readable, flatten=True)
    # The calls DVC makes without flattening or without keys go to DVC's own function.
    for key_paths, flatten in (([], True), (None, True), (["grid", "train.*.patience"], False)):
        assert fast(fs, str(params_file), key_paths, flatten=flatten) == original(fs, str(params_file), key_paths, flatten=flatten)


def test_params_reader_values_are_copies_and_follow_the_file_content(params_file: Path) -> None:
    fs = LocalFileSystem()
    fast = dvc_cli.params_reader(original_reader(), dvc_cli.ParsedParams())
    first = fast(fs, str(params_file), ["grid", "train.discriminative"], flatten=True)
    first["grid"]["datasets"].append("changed by a caller")
    first["train.discriminative"]["max_epochs"] = -1
    again = fast(fs, str(params_file), ["grid", "train.discriminative"], flatten=True)
    assert again == {"grid": {"datasets": ["ag_news", "dbpedia"], "bit_widths": [8, 4]}, "train.discriminative": {"max_epochs": 15, "patience": 3}}
    # The same size and modification time, another value: a parse kept by path or mtime would be stale here.
    stat = params_file.stat()
    params_file.write_text(PARAMS_YAML.replace("seed: 2025", "seed: 2026"), encoding="utf-8")
    os.utime(params_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert params_file.stat().st_size == stat.st_size
    assert fast(fs, str(params_file), ["seed"], flatten=True) == {"seed": 2026}


def test_params_reader_raises_dvcs_errors_and_keeps_no_broken_parse(params_file: Path) -> None:
    fs = LocalFileSystem()
    original = original_reader()
    parsed = dvc_cli.ParsedParams()
    fast = dvc_cli.params_reader(original, parsed)
    params_file.write_text("seed: [2025\n", encoding="utf-8")
    broken = outcome(fast, fs, str(params_file), ["seed"], flatten=True)
    assert broken == outcome(original, fs, str(params_file), ["seed"], flatten=True)
    assert broken[0] == "YAMLFileCorruptedError"
    params_file.write_bytes(b"seed: \xff\n")
    undecodable = outcome(fast, fs, str(params_file), ["seed"], flatten=True)
    assert undecodable == outcome(original, fs, str(params_file), ["seed"], flatten=True)
    assert undecodable[0] == "EncodingError"
    assert not parsed.parsed
    params_file.write_text("seed: 7\n", encoding="utf-8")
    assert fast(fs, str(params_file), ["seed"], flatten=True) == {"seed": 7}
    json_file = params_file.with_suffix(".json")
    json_file.write_text('{"seed": 8, "train": {"lr": 0.5}}', encoding="utf-8")
    assert fast(fs, str(json_file), ["train.lr"], flatten=True) == original(fs, str(json_file), ["train.lr"], flatten=True) == {"train.lr": 0.5}
    assert len(parsed.parsed) == 1  # the JSON file went to DVC's own reader


def test_parsed_params_keeps_the_most_recent_contents_only(tmp_path: Path) -> None:
    fs = LocalFileSystem()
    parsed = dvc_cli.ParsedParams(capacity=3)
    path = tmp_path / "params.yaml"
    for seed in range(5):
        path.write_text(f"seed: {seed}\n", encoding="utf-8")
        assert parsed.load(fs, str(path)) == {"seed": seed}
    assert [config["seed"] for config in parsed.parsed.values()] == [2, 3, 4]


def test_memory_info_answers_what_fsspec_answers() -> None:
    fs = MemoryFileSystem()
    original = getattr(MemoryFileSystem.info, "original", MemoryFileSystem.info)
    fast = dvc_cli.memory_info(original)
    root = "/test_dvc_cli_memory_info"
    fs.pipe_file(f"{root}/folder/file.txt", b"12345")
    fs.pipe_file(f"{root}/top.bin", b"")
    fs.mkdir(f"{root}/empty_dir")
    paths = [
        f"{root}/folder/file.txt",
        f"memory://{root}/folder/file.txt",
        f"{root}/top.bin",
        f"{root}/folder",
        root,
        f"{root}/empty_dir",
        f"{root}/missing",
        f"{root}/folder/file.txt/below",
    ]
    for path in paths:
        assert outcome(fast, fs, path) == outcome(original, fs, path), path
    assert outcome(fast, fs, f"{root}/missing")[0] == "FileNotFoundError"
    assert fast(fs, f"{root}/folder/file.txt")["type"] == "file"
    fs.rm(root, recursive=True)


def apply_in_subprocess(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=REPO)


def test_pins_are_the_locked_and_installed_versions() -> None:
    locked = dict(
        line.split("==") for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines() if "==" in line and not line.startswith("#")
    )
    for name, pins in dvc_cli.PINNED.items():
        for package, pinned in pins.items():
            assert locked[package] == pinned, f"{name}: requirements.lock pins {package}=={locked[package]}, dvc_cli.PINNED {pinned}"
    code = (
        "from lstm_ptq import dvc_cli; import dvc.dependency.param as p; from fsspec.implementations.memory import MemoryFileSystem as M\n"
        "print(dvc_cli.apply()); dvc_cli.apply(); print(hasattr(p.read_param_file, 'original'), hasattr(M.info, 'original'),"
        " hasattr(p.read_param_file.original, 'original'), hasattr(M.info.original, 'original'))"
    )
    done = apply_in_subprocess(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'params': [], 'memory_info': []}", "True True False False"]  # applied once, not twice


def test_another_dvc_version_runs_as_installed() -> None:
    code = (
        "from lstm_ptq import dvc_cli; import dvc.dependency.param as p; from fsspec.implementations.memory import MemoryFileSystem as M\n"
        "print(dvc_cli.apply({'dvc': '3.68.0', 'dpath': '2.2.0', 'fsspec': '2026.10.0'}));"
        " print(hasattr(p.read_param_file, 'original'), hasattr(M.info, 'original'))"
    )
    done = apply_in_subprocess(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'params': ['dvc 3.68.0 != 3.67.1'], 'memory_info': ['fsspec 2026.10.0 != 2026.9.0']}", "False False"]


@pytest.mark.parametrize(("value", "applied"), [("0", "False"), ("1", "True")])
def test_the_environment_switches_the_speedups(value: str, applied: str) -> None:
    code = "from lstm_ptq import dvc_cli; import dvc.dependency.param as p; dvc_cli.apply_from_environment(); print(hasattr(p.read_param_file, 'original'))"
    done = apply_in_subprocess(code, {dvc_cli.SPEEDUPS_ENV: value})
    assert (done.returncode, done.stdout.strip()) == (0, applied), done.stderr


def test_a_bad_environment_value_is_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lstm_ptq.dvc_cli", "version"], capture_output=True, text=True, env={**os.environ, dvc_cli.SPEEDUPS_ENV: "yes"}, cwd=REPO
    )
    assert done.returncode != 0
    assert "LSTM_PTQ_DVC_SPEEDUPS='yes': expected 1" in done.stderr


DVC_YAML = """\
stages:
  prepare:
    foreach: ${grid.datasets}
    do:
      cmd: python -c "import pathlib, sys; d = pathlib.Path('data/${item}'); d.mkdir(parents=True, exist_ok=True); (d / 'a.txt').write_text('${item}'); (d / 'b.txt').write_text('b')"
      params:
      - seed
      - grid.bit_widths
      - train.discriminative
      outs:
      - data/${item}
  train:
    matrix:
      dataset: ${grid.datasets}
      model_type: [discriminative, generative]
    cmd: python -c "import pathlib; d = pathlib.Path('models/${item.dataset}/${item.model_type}'); d.mkdir(parents=True, exist_ok=True); (d / 'model.txt').write_text('m')"
    deps:
    - data/${item.dataset}
    params:
    - train.learning_rate
    - train.${item.model_type}
    - numbers.2
    - lists
    outs:
    - models/${item.dataset}/${item.model_type}
"""


def git_dvc_repo(root: Path) -> dict[str, str]:
    """An empty git and DVC repository at ``root``, with the isolated environment of tests/dvc_project.py."""
    home = root.parent / "home"
    home.mkdir()
    env = isolated_env(home, root, hash_seed="0")
    root.mkdir()
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "DVC Tester"],
        ["git", "config", "user.email", "dvctester@example.com"],
        [sys.executable, "-m", "dvc", "init", "-q"],
        [sys.executable, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(root.parent / "site_cache")],
    ):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return env


def test_status_and_params_diff_agree_with_plain_dvc_after_params_changes(tmp_path: Path) -> None:
    root = tmp_path / "project"
    env = git_dvc_repo(root)
    # Without the key "1" beside the key 1: `dvc params diff --all` flattens the whole file and stops at the pair.
    text = PARAMS_YAML.replace('  "1": string one\n', "")
    (root / "params.yaml").write_text(text, encoding="utf-8")
    (root / "dvc.yaml").write_text(DVC_YAML, encoding="utf-8")

    def dvc(entry: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", entry, *args], cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{entry} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        assert "speed-up not applied" not in done.stderr
        return done.stdout

    dvc("lstm_ptq.dvc_cli", "repro", "-q")
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "run"], cwd=root, env=env, check=True)
    assert json.loads(dvc("lstm_ptq.dvc_cli", "status", "--json")) == json.loads(dvc("dvc", "status", "--json")) == {}

    edits = [
        ("seed: 2025", "seed: 2026"),  # a plain top-level key
        ("generative: {max_epochs: 2}", "generative: {max_epochs: 3}"),  # a subtree that the matrix item names
        ("  2: two", "  2: deux"),  # a key that dpath reads (an integer key)
        ("  - {name: second}", "  - {name: third}"),  # a list
        ("  learning_rate: 0.001\n", ""),  # a declared key deleted
    ]
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
        (root / "params.yaml").write_text(text, encoding="utf-8")
        status = json.loads(dvc("lstm_ptq.dvc_cli", "status", "--json"))
        assert status == json.loads(dvc("dvc", "status", "--json")), old
        assert status, old  # each edit makes some stage out of date
        assert dvc("lstm_ptq.dvc_cli", "params", "diff", "--all") == dvc("dvc", "params", "diff", "--all"), old
    assert set(json.loads(dvc("lstm_ptq.dvc_cli", "status", "--json"))) == {
        "prepare@ag_news",
        "prepare@dbpedia",
        *(f"train@{d}-{m}" for d in ("ag_news", "dbpedia") for m in ("discriminative", "generative")),
    }
