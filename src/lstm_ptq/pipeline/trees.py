"""The trees of params.yaml as the report stages read them: which cells each ran, under which seed, and
whether it is a seed tree (it retrains and changes nothing but the seed and which cells run), whose
results are pooled with the main tree's as another training seed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import ProjectPaths
from ..settings import GridSettings, TreeSettings, get_seed


@dataclass(frozen=True)
class TreeRun:
    """A tree of params.yaml (settings.TreeSettings): its paths, axes and seed, and whether it differs from
    the main tree only in its seed (and which cells it runs)."""

    name: str
    paths: ProjectPaths
    datasets: tuple[str, ...]
    model_types: tuple[str, ...]
    bit_widths: tuple[int, ...]
    schemes: tuple[str, ...]
    seed: int
    seed_only: bool
    changes: str  # its params, as the reports print them


def is_seed_tree(params: Mapping[str, Any], name: str) -> bool:
    """Whether ``trees.<name>`` retrains and overrides nothing but ``seed`` and ``grid``."""
    return _seed_only(TreeSettings.from_params(params, name), params["trees"][name].get("params") or {})


def _seed_only(tree: TreeSettings, overrides: Mapping[str, Any]) -> bool:
    return tree.rerun_from == "train" and set(overrides) <= {"seed", "grid"}


def tree_run(root: Path, params: Mapping[str, Any], name: str) -> TreeRun:
    """What a report reads of ``trees.<name>`` (its settings read through the tree's view of params)."""
    tree = TreeSettings.from_params(params, name)
    view, overrides = tree.view(params), params["trees"][name].get("params") or {}
    grid = GridSettings.from_params(view)  # (no torch: a report stage that reads trees stays light)
    return TreeRun(
        name=name,
        paths=tree.paths(root),
        datasets=tuple(grid.datasets),
        model_types=tuple(grid.model_types),
        bit_widths=tuple(grid.bit_widths),
        schemes=tuple(grid.calibration_schemes),
        seed=get_seed(view),
        seed_only=_seed_only(tree, overrides),
        changes="; ".join(f"`{key}`: {value}" for key, value in flat_items(overrides)) or "none",
    )


def flat_items(node: Mapping[str, Any], where: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in node.items():
        name = f"{where}.{key}" if where else key
        out += flat_items(value, name) if isinstance(value, Mapping) else [(name, value)]
    return out
