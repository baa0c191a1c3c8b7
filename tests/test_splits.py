"""Seeded stratified splits (paper section 5.1: 80% train / 20% validation)."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from lstm_ptq.datasets import parse_release_csv
from lstm_ptq.errors import ParamError
from lstm_ptq.splits import stratified_split

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled"


@pytest.fixture(scope="module")
def dbpedia_labels() -> np.ndarray:
    """0-based labels of the 5,000 real bundled DBPedia rows (320 to 388 per class)."""
    path = BUNDLED / "dbpedia" / "train.csv.gz"
    documents = parse_release_csv(path, gzip.decompress(path.read_bytes()).decode("utf-8"), 14)
    return np.array([d.label for d in documents])


def test_every_class_holds_out_its_rounded_share(dbpedia_labels):
    kept, held = stratified_split(dbpedia_labels, 0.2, seed=2025)
    per_class = np.bincount(dbpedia_labels, minlength=14)
    np.testing.assert_array_equal(np.bincount(dbpedia_labels[held], minlength=14), np.round(0.2 * per_class))
    np.testing.assert_array_equal(np.bincount(dbpedia_labels[kept], minlength=14), per_class - np.round(0.2 * per_class))
    assert len(held) == 1000


def test_split_is_disjoint_covering_and_sorted(dbpedia_labels):
    kept, held = stratified_split(dbpedia_labels, 0.2, seed=2025)
    assert np.intersect1d(kept, held).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(dbpedia_labels)))
    assert np.all(np.diff(kept) > 0) and np.all(np.diff(held) > 0)


def test_same_seed_same_split_other_seed_other_split(dbpedia_labels):
    first = stratified_split(dbpedia_labels, 0.2, seed=7)
    again = stratified_split(dbpedia_labels, 0.2, seed=7)
    other = stratified_split(dbpedia_labels, 0.2, seed=8)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_small_classes_keep_at_least_one_row_on_each_side():
    labels = [0] * 10 + [1] * 2 + [2]
    kept, held = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(np.array(labels)[held], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(np.array(labels)[kept], minlength=3).tolist() == [8, 1, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_open_unit_interval_names_the_parameter(fraction):
    with pytest.raises(ParamError, match=r"^tokenize\.valid_fraction: .* is not in \(0, 1\)"):
        stratified_split([0, 1, 0, 1], fraction, seed=0, name="tokenize.valid_fraction")
