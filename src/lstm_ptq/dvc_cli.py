"""DVC's command line with two speed-ups of DVC's own bookkeeping: what ``./run dvc`` and a bare ``./run repro`` run.

    python -m lstm_ptq.dvc_cli <any dvc command>      (``LSTM_PTQ_DVC_SPEEDUPS=0``: plain DVC)

A no-op ``dvc status`` of this study's ~800 stages spends about a third of its time in two places that grow
with the project and that no project layout avoids (README, Performance: "Where a no-op `dvc status` goes"):

- ``params``: for every stage DVC reparses params.yaml and looks each declared key up with ``dpath.get``, which
  walks every node of the file per key (~10,000 keys). Here the parse is kept per file content and a plain dotted
  key is read by walking the dict; any other key (a glob, a list index, a missing key, a non-string dict key on
  the way) goes to ``dpath.get`` as before. Each value is deep-copied, as a fresh parse would give.
- ``memory_info``: each directory's tree is hashed through fsspec's in-memory file system, whose ``info`` scans
  every path ever stored before it looks the path up; the store only grows, so a status is quadratic in its
  directories. Here a stored file is answered first. The answers differ only for a stored file that also has
  children, which fsspec's own ``open`` refuses to create and DVC never creates.

Both replace a function of a pinned version (:data:`PINNED`) and are applied only when the installed version
is that one; otherwise DVC runs as installed, with a one-line notice. tests/test_dvc_cli.py checks each
against the original on the same inputs and the DVC workflow tests run through this entry point.
"""

from __future__ import annotations

import copy
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from typing import Any

SPEEDUPS_ENV = "LSTM_PTQ_DVC_SPEEDUPS"
# The versions each speed-up was written against and checked on (requirements.lock pins the same; a test checks it).
PINNED: dict[str, dict[str, str]] = {
    "params": {"dvc": "3.67.1", "dpath": "2.2.0"},
    "memory_info": {"fsspec": "2026.9.0"},
}
# Parsed params files kept per process, by content: a few revisions (`dvc exp show`, `dvc params diff`) at most.
PARSED_FILES = 8
GLOB_CHARACTERS = frozenset("*?[]")
# The loaders DVC chooses by suffix other than YAML (dvc.utils.serialize.LOADERS): left to DVC.
OTHER_LOADERS = frozenset({".toml", ".json", ".py"})


def installed_versions(packages: Sequence[str]) -> dict[str, str]:
    return {package: version(package) for package in packages}


def mismatches(name: str, versions: Mapping[str, str]) -> list[str]:
    """``package installed != pinned`` for each package of speed-up ``name`` whose version differs."""
    return [f"{package} {versions.get(package)} != {pinned}" for package, pinned in PINNED[name].items() if versions.get(package) != pinned]


class ParsedParams:
    """params files parsed once per content, least recently used dropped past :data:`PARSED_FILES`."""

    def __init__(self, capacity: int = PARSED_FILES) -> None:
        self.capacity = capacity
        self.parsed: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()  # DVC 3.67.1 reads params in one thread; the cache stays whole if that changes

    def load(self, fs: Any, path: str) -> Any:
        """The file parsed as dvc.utils.serialize.load_yaml parses it, with the same errors (never kept)."""
        from dvc.utils.serialize import EncodingError, parse_yaml
        from funcy import reraise

        with fs.open(path, encoding="utf-8") as fd, reraise(UnicodeDecodeError, EncodingError(path, "utf-8")):
            text = fd.read()
        with self._lock:
            if text in self.parsed:
                self.parsed.move_to_end(text)
                return self.parsed[text]
        config = parse_yaml(text, path)
        with self._lock:
            self.parsed[text] = config
            while len(self.parsed) > self.capacity:
                self.parsed.popitem(last=False)
        return config


def lookup(config: Any, key_path: str) -> Any:
    """``dpath.get(config, key_path, separator=".")``: a plain dotted key by walking the dicts, anything else by dpath."""
    import dpath

    parts = key_path.split(".")
    node = config
    if all(parts) and not GLOB_CHARACTERS.intersection(key_path):
        for part in parts:
            # dpath matches a segment against str(key) of every key: one string key equals it, unless another
            # key's str() does too (1 and "1"); with only string keys the walk finds what dpath finds.
            if type(node) is not dict or part not in node or not all(type(key) is str for key in node):
                break
            node = node[part]
        else:
            return node
    return dpath.get(config, key_path, separator=".")


def params_reader(original: Callable[..., Any], parsed: ParsedParams) -> Callable[..., Any]:
    """A ``dvc.dependency.param.read_param_file`` that returns what ``original`` returns, parsing a file once."""

    def read_param_file(fs: Any, path: str, key_paths: list[str] | None = None, flatten: bool = False, **load_kwargs: Any) -> Any:
        if not key_paths or not flatten or load_kwargs or fs.suffix(path).lower() in OTHER_LOADERS:
            return original(fs, path, key_paths, flatten, **load_kwargs)
        config = parsed.load(fs, path)
        values = {}
        for key_path in key_paths:
            try:
                values[key_path] = copy.deepcopy(lookup(config, key_path))
            except KeyError:
                continue
        return values

    read_param_file.original = original  # type: ignore[attr-defined]
    return read_param_file


def memory_info(original: Callable[..., Any]) -> Callable[..., Any]:
    """fsspec ``MemoryFileSystem.info`` that answers a stored file before scanning the store for children."""

    def info(self: Any, path: str, **kwargs: Any) -> dict[str, Any]:
        stripped = self._strip_protocol(path)
        filelike = self.store.get(stripped)
        if filelike is None or stripped in self.pseudo_dirs:
            return original(self, path, **kwargs)
        return {"name": stripped, "size": filelike.size, "type": "file", "created": getattr(filelike, "created", None)}

    info.original = original  # type: ignore[attr-defined]
    return info


def apply(versions: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Install each speed-up whose packages are at their pinned versions (once per process).

    Returns each speed-up's version mismatches (empty: installed). ``versions`` defaults to the installed ones."""
    if versions is None:
        versions = installed_versions(sorted({package for pins in PINNED.values() for package in pins}))
    found = {name: mismatches(name, versions) for name in PINNED}
    if not found["params"]:
        import dvc.dependency.param as param

        if not hasattr(param.read_param_file, "original"):
            param.read_param_file = params_reader(param.read_param_file, ParsedParams())
    if not found["memory_info"]:
        from fsspec.implementations.memory import MemoryFileSystem

        if not hasattr(MemoryFileSystem.info, "original"):
            MemoryFileSystem.info = memory_info(MemoryFileSystem.info)  # type: ignore[method-assign]
    return found


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    value = environ.get(SPEEDUPS_ENV, "1")
    if value not in ("0", "1"):
        raise SystemExit(f"error: {SPEEDUPS_ENV}={value!r}: expected 1 (DVC with the project's speed-ups, the default) or 0 (plain DVC)")
    return value == "1"


def apply_from_environment() -> None:
    """:func:`apply` unless ``LSTM_PTQ_DVC_SPEEDUPS=0``; a speed-up left out for a version is named on stderr."""
    if not enabled():
        return
    for name, found in apply().items():
        if found:
            print(f"lstm_ptq.dvc_cli: DVC's {name} speed-up not applied ({', '.join(found)}): DVC runs as installed", file=sys.stderr)


def main(argv: Sequence[str]) -> int:
    apply_from_environment()
    from dvc.cli import main as dvc_main

    return dvc_main(list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
