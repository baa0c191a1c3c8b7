"""params.yaml sections as frozen, validated dataclasses.

Each ``from_params`` names the dotted parameter key in its error, so a wrong value in params.yaml is
reported as e.g. ``tokenize.max_length: -3 must be >= 1``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .datasets import DATASETS
from .errors import ParamError

SOURCES = ("bundled", "remote")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(f"{path}: parameter file not found") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections at the top level")
    return params


def section(params: Mapping[str, Any], key: str) -> Any:
    """Look up a dotted key, naming the first missing part."""
    node: Any = params
    walked = []
    for part in key.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            raise ParamError(f"{'.'.join(walked)}: missing from params.yaml")
        node = node[part]
    return node


def get_typed(node: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``node[key]`` checked against ``kind``; ``where`` is the dotted path of ``node`` ("" at the top level)."""
    name = f"{where}.{key}" if where else key
    if not isinstance(node, Mapping) or key not in node:
        raise ParamError(f"{name}: missing from params.yaml")
    value = node[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ParamError(f"{name}: {value!r} is not a {' or '.join(k.__name__ for k in kinds)}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        raise ParamError(f"{name}: {value!r} is not a {' or '.join(k.__name__ for k in kinds)}")
    return value


def get_seed(params: Mapping[str, Any]) -> int:
    """The top-level ``seed``; numpy's generators refuse negative seeds."""
    seed = get_typed(params, "seed", int, "")
    if seed < 0:
        raise ParamError(f"seed: {seed} must be >= 0")
    return seed


def check_dataset(name: str, where: str = "dataset") -> str:
    if name not in DATASETS:
        raise ParamError(f"{where}: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return name


def check_fraction(value: float, where: str, *, allow_one: bool = False) -> float:
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value > 0.0 and upper_ok):
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise ParamError(f"{where}: {value!r} is not in {bound}")
    return value


@dataclass(frozen=True)
class RemoteSource:
    url: str
    sha256: str
    timeout_s: float

    @classmethod
    def from_params(cls, node: Mapping[str, Any], where: str) -> "RemoteSource":
        url = get_typed(node, "url", str, where)
        if not re.match(r"^(https?|file)://", url):
            raise ParamError(f"{where}.url: {url!r} is not an http(s):// or file:// URL")
        sha256 = get_typed(node, "sha256", str, where).lower()
        if not _SHA256.fullmatch(sha256):
            raise ParamError(f"{where}.sha256: {sha256!r} is not 64 hexadecimal digits")
        timeout = get_typed(node, "timeout_s", float, where)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ParamError(f"{where}.timeout_s: {timeout!r} must be a finite number > 0")
        return cls(url, sha256, timeout)


@dataclass(frozen=True)
class DownloadParams:
    dataset: str
    source: str
    remote: RemoteSource | None
    bundled_test_fraction: float | None
    seed: int
    bundled_extra_train: bool = False  # append the bundled title-less extra training rows (see PROVENANCE.md)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> "DownloadParams":
        check_dataset(dataset)
        where = f"download.{dataset}"
        node = section(params, where)
        source = get_typed(node, "source", str, where)
        if source not in SOURCES:
            raise ParamError(f"{where}.source: unknown source {source!r}; expected one of {list(SOURCES)}")
        remote = RemoteSource.from_params(section(params, f"{where}.remote"), f"{where}.remote") if source == "remote" else None
        test_fraction = None
        if "bundled_test_fraction" in node:
            test_fraction = check_fraction(get_typed(node, "bundled_test_fraction", float, where), f"{where}.bundled_test_fraction")
        extra = get_typed(node, "bundled_extra_train", bool, where) if "bundled_extra_train" in node else False
        return cls(dataset, source, remote, test_fraction, get_seed(params), extra)


@dataclass(frozen=True)
class TokenizeParams:
    lowercase: bool
    max_vocab_size: int
    min_freq: int
    max_length: int
    valid_fraction: float
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "TokenizeParams":
        where = "tokenize"
        node = section(params, where)
        out = cls(
            lowercase=get_typed(node, "lowercase", bool, where),
            max_vocab_size=get_typed(node, "max_vocab_size", int, where),
            min_freq=get_typed(node, "min_freq", int, where),
            max_length=get_typed(node, "max_length", int, where),
            valid_fraction=check_fraction(get_typed(node, "valid_fraction", float, where), f"{where}.valid_fraction"),
            seed=get_seed(params),
        )
        if out.max_vocab_size <= 4:
            raise ParamError(f"{where}.max_vocab_size: {out.max_vocab_size} must be > 4 (the special tokens)")
        if out.min_freq < 1:
            raise ParamError(f"{where}.min_freq: {out.min_freq} must be >= 1")
        if out.max_length < 2:
            raise ParamError(f"{where}.max_length: {out.max_length} must be >= 2")
        return out
