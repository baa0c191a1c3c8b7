"""Calibration sets (paper sections 5.3, 5.4 and 6.1), built from the TRAINING split, in one registry.

Every scheme draws the same number of documents (``fraction`` of the training split, 25% in the
paper). Documents come from prefixes of ONE seeded permutation per class (and one of all rows), so
schemes share documents wherever their classes overlap and differ only in composition:

- ``class_unconditional``: a random sample of the training rows, whatever their classes (section 5.3).
- ``class_conditional``: equal rows per class (section 5.4).
- ``classes_<k>``: equal rows from k classes only (section 6.1's class coverage; ``classes_all`` = all).
  The k classes are the first k of a seeded class permutation, so lower coverage is nested in higher.
- ``pseudo_class_conditional``: balanced by the FLOAT model's own predicted labels, so it needs no
  true labels: the practical answer to the paper's finding that balance matters but labels are absent.
- ``imbalanced_<r>``: a controlled class imbalance at the same size: the classes, in the coverage
  schemes' seeded order, get geometric shares 1 : r : r^2 : ... (0 < r < 1). A class that holds fewer
  rows than its share gives all it has and the rest is shared by the later classes in the same
  proportions, so the scheme never lowers the common size. A random sample of a class-balanced
  training split is itself nearly balanced; this scheme is not.

No scheme passes labels on: calibration and GPFQ see token sequences only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .errors import DataError, ParamError

_COVERAGE = re.compile(r"^classes_(all|\d+)$")
_IMBALANCED = re.compile(r"^imbalanced_(0\.\d*[1-9]\d*)$")


# How the generative model's decoder is fed during calibration and GPFQ (calibration.decoder_feeding).
# Inference scores every label, so ``all_labels`` makes the decoder's calibration data label-balanced
# whatever the classes of the calibration documents; the paper's class-conditional sampling needs labels
# anyway, and its calibration may have fed each document with its own label.
DECODER_FEEDINGS: dict[str, str] = {
    "all_labels": "[h_t ; l_y] for every candidate label y, as inference scores them (label-free)",
    "true_label": "each document with its own label (needs labels, as class-conditional sampling does)",
    "predicted_label": "each document with the float model's predicted label (label-free)",
}


def check_decoder_feeding(name: object, where: str = "calibration.decoder_feeding") -> str:
    if name not in DECODER_FEEDINGS:
        raise ParamError(f"{where}: unknown feeding {name!r}; expected one of {list(DECODER_FEEDINGS)}")
    return str(name)


@dataclass(frozen=True)
class CalibrationContext:
    labels: np.ndarray  # true labels of the training split (used only to compose label-aware schemes)
    num_classes: int
    size: int
    seed: int
    predicted_labels: np.ndarray | None = None  # float model's predictions on the training split


def calibration_size(train_rows: int, fraction: float) -> int:
    if not 0.0 < fraction <= 1.0:
        raise ParamError(f"calibration.fraction: {fraction!r} is not in (0, 1]")
    return max(1, int(round(fraction * train_rows)))


def _class_permutations(labels: np.ndarray, num_classes: int, seed: int, what: str) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    permutations = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        permutations.append(members[rng.permutation(len(members))])
    return permutations


def balanced_rows(labels: np.ndarray, classes: list[int], size: int, seed: int, num_classes: int, what: str) -> np.ndarray:
    """``size`` rows spread as evenly as possible over ``classes`` (prefixes of per-class permutations)."""
    permutations = _class_permutations(labels, num_classes, seed, what)
    base, extra = divmod(size, len(classes))
    chosen = []
    for position, label in enumerate(classes):
        want = base + (1 if position < extra else 0)
        available = permutations[label]
        if len(available) == 0:
            raise DataError(f"calibration scheme {what}: class {label} has no rows in the training split")
        if want > len(available):
            raise DataError(f"calibration scheme {what}: class {label} has {len(available)} training rows, {want} needed; lower calibration.fraction")
        chosen.append(available[:want])
    return np.sort(np.concatenate(chosen))


def coverage_classes_in_order(num_classes: int, seed: int) -> list[int]:
    """Every class in the seeded order the coverage and imbalanced schemes share."""
    return [int(c) for c in np.random.default_rng([seed, 2]).permutation(num_classes)]


def coverage_classes(num_classes: int, k: int, seed: int) -> list[int]:
    return sorted(coverage_classes_in_order(num_classes, seed)[:k])


def geometric_counts(ratio: float, size: int, available: list[int]) -> list[int]:
    """Rows per class, in class order, for shares 1 : r : r^2 : ... of ``size``, each capped by the
    class's ``available`` rows with the excess shared by the uncapped classes in the same proportions."""
    if sum(available) < size:
        raise DataError(f"calibration size {size} exceeds the {sum(available)} training rows")
    weights = np.array([ratio**k for k in range(len(available))], dtype=np.float64)
    counts = np.zeros(len(available), dtype=np.int64)
    open_classes = np.ones(len(available), dtype=bool)
    remaining = size
    while remaining > 0:
        share = np.where(open_classes, weights, 0.0)
        share = share / share.sum() * remaining
        whole = np.floor(share).astype(np.int64)
        order = np.argsort(-(share - whole), kind="stable")  # largest remainders first, then class order
        whole[order[: remaining - int(whole.sum())]] += 1
        room = np.array(available) - counts
        take = np.minimum(whole, room)
        counts += take
        remaining -= int(take.sum())
        open_classes &= counts < np.array(available)
    return counts.tolist()


def _imbalanced(ctx: CalibrationContext, ratio: float, name: str) -> np.ndarray:
    order = coverage_classes_in_order(ctx.num_classes, ctx.seed)
    permutations = _class_permutations(ctx.labels, ctx.num_classes, ctx.seed, name)
    counts = geometric_counts(ratio, ctx.size, [len(permutations[c]) for c in order])
    return np.sort(np.concatenate([permutations[c][:n] for c, n in zip(order, counts, strict=True)]))


def _unconditional(ctx: CalibrationContext) -> np.ndarray:
    order = np.random.default_rng([ctx.seed, 0]).permutation(len(ctx.labels))
    return np.sort(order[: ctx.size])


def _conditional(ctx: CalibrationContext) -> np.ndarray:
    return balanced_rows(ctx.labels, list(range(ctx.num_classes)), ctx.size, ctx.seed, ctx.num_classes, "class_conditional")


def _pseudo_conditional(ctx: CalibrationContext) -> np.ndarray:
    if ctx.predicted_labels is None:
        raise DataError("calibration scheme pseudo_class_conditional needs the float model's predictions")
    present = sorted(int(c) for c in np.unique(ctx.predicted_labels))
    return balanced_rows(ctx.predicted_labels, present, ctx.size, ctx.seed, ctx.num_classes, "pseudo_class_conditional")


@dataclass(frozen=True)
class Scheme:
    """A registered calibration scheme: how it selects rows, and whether it needs the float model's
    predicted labels on the training split (``CalibrationContext.predicted_labels``)."""

    select: Callable[[CalibrationContext], np.ndarray]
    needs_predictions: bool = False


# Adding a scheme is one entry here (``classes_<k>``, ``classes_all`` and ``imbalanced_<r>`` are
# patterns, not entries).
SCHEMES: dict[str, Scheme] = {
    "class_unconditional": Scheme(_unconditional),
    "class_conditional": Scheme(_conditional),
    "pseudo_class_conditional": Scheme(_pseudo_conditional, needs_predictions=True),
}


def needs_predictions(schemes: Iterable[str]) -> bool:
    """Whether any of ``schemes`` needs the float model's predictions on the training split."""
    return any(SCHEMES[name].needs_predictions for name in schemes if name in SCHEMES)


def check_scheme(name: str, num_classes: int | None = None) -> str:
    match = _COVERAGE.match(name)
    if name in SCHEMES or match or _IMBALANCED.match(name):
        if match and match.group(1) != "all" and num_classes is not None and not 1 <= int(match.group(1)) <= num_classes:
            raise ParamError(f"calibration scheme {name!r}: k must be in 1..{num_classes}")
        return name
    raise ParamError(f"unknown calibration scheme {name!r}; expected one of {sorted(SCHEMES)}, classes_<k> / classes_all, or imbalanced_<r> with 0 < r < 1")


def select_calibration_rows(name: str, ctx: CalibrationContext) -> np.ndarray:
    """Row indices of the training split that form the calibration set of scheme ``name``."""
    check_scheme(name, ctx.num_classes)
    if ctx.size > len(ctx.labels):
        raise ParamError(f"calibration size {ctx.size} exceeds the {len(ctx.labels)} training rows")
    if name in SCHEMES:
        return SCHEMES[name].select(ctx)
    imbalanced = _IMBALANCED.match(name)
    if imbalanced:
        return _imbalanced(ctx, float(imbalanced.group(1)), name)
    k_text = _COVERAGE.match(name).group(1)  # type: ignore[union-attr]
    k = ctx.num_classes if k_text == "all" else int(k_text)
    return balanced_rows(ctx.labels, coverage_classes(ctx.num_classes, k, ctx.seed), ctx.size, ctx.seed, ctx.num_classes, name)


def _feasible(name: str, ctx: CalibrationContext) -> bool:
    try:
        select_calibration_rows(name, ctx)
    except DataError:
        return False
    return True


def largest_feasible_size(name: str, ctx: CalibrationContext) -> int:
    """The largest calibration size scheme ``name`` can draw from the training split (binary search)."""
    low, high = 0, len(ctx.labels)
    while low < high:
        middle = (low + high + 1) // 2
        if _feasible(name, CalibrationContext(ctx.labels, ctx.num_classes, middle, ctx.seed, ctx.predicted_labels)):
            low = middle
        else:
            high = middle - 1
    return low


def build_calibration_sets(
    labels: np.ndarray, num_classes: int, fraction: float, schemes: list[str], seed: int, predicted_labels: np.ndarray | None = None
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Rows of every scheme at ONE common size, so schemes differ in composition only.

    The size is ``fraction`` of the training split unless a scheme of the grid cannot supply that
    many rows from its classes (e.g. one DBPedia class holds ~7% of the rows): then it is the largest
    size every scheme can supply. The summary records the size and each scheme's class histogram.
    """
    for name in schemes:
        check_scheme(name, num_classes)
    if len(set(schemes)) != len(schemes):
        raise ParamError(f"grid.calibration_schemes: {schemes!r} repeats a scheme")
    requested = calibration_size(len(labels), fraction)
    probe = CalibrationContext(labels, num_classes, requested, seed, predicted_labels)
    size = min([requested] + [largest_feasible_size(name, probe) for name in schemes])
    if size < 1:
        raise DataError(f"grid.calibration_schemes: some scheme cannot draw a single row from the training split ({schemes})")
    ctx = CalibrationContext(labels, num_classes, size, seed, predicted_labels)
    rows = {name: select_calibration_rows(name, ctx) for name in schemes}
    summary: dict[str, object] = {
        "requested_size": requested,
        "size": size,
        "fraction_of_train": round(size / len(labels), 6),
        "class_histogram": {name: np.bincount(labels[r], minlength=num_classes).tolist() for name, r in rows.items()},
    }
    return rows, summary
