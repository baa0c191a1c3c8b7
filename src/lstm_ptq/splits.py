"""Seeded, stratified splits (paper section 5.1: 80% train / 20% validation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ParamError


def stratified_split(labels: Sequence[int] | np.ndarray, held_out_fraction: float, seed: int, *, name: str = "fraction") -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into (kept, held_out), taking ``round(fraction * n_c)`` rows of every class.

    Deterministic for a given seed; both index arrays are sorted so outputs keep the input order.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise ParamError(f"{name}: {held_out_fraction!r} is not in (0, 1)")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_held = int(round(held_out_fraction * len(members)))
        if len(members) > 1:
            n_held = min(max(n_held, 1), len(members) - 1)
        held.append(members[:n_held])
        kept.append(members[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))
