"""The tokenize stage on real AG News rows: deterministic outputs, a train-only vocabulary, exact stats."""

import gzip
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lstm_ptq.artifacts import read_json
from lstm_ptq.datasets import DATASETS, Document, format_release_csv, parse_release_csv
from lstm_ptq.errors import DataError
from lstm_ptq.preprocess import SPLITS, build_tokenized, load_split, load_vocabulary, tokenize_documents
from lstm_ptq.settings import TokenizeSettings
from lstm_ptq.text import PAD_ID, SPECIAL_TOKENS, UNK_ID

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled"
AG = DATASETS["ag_news"]
PARAMS = TokenizeSettings(lowercase=True, max_vocab_size=100_000, min_freq=2, max_length=24, valid_fraction=0.2, seed=2025)
EMPTY_AFTER_CLEANING = Document(2, "!!!", "?! ... --")
TRAIN_EMPTY_ROW, TEST_EMPTY_ROW = 10, 5


def bundled_documents(name: str, rows: int) -> list[Document]:
    path = BUNDLED / "ag_news" / f"{name}.gz"
    return parse_release_csv(path, gzip.decompress(path.read_bytes()).decode("utf-8"), AG.num_classes)[:rows]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    """400 real train rows and 150 real test rows, each file with one row that cleans to nothing."""
    raw = tmp_path_factory.mktemp("raw") / "ag_news"
    raw.mkdir()
    train = bundled_documents("train.csv", 400)
    test = bundled_documents("test.csv", 150)
    train.insert(TRAIN_EMPTY_ROW, EMPTY_AFTER_CLEANING)
    test.insert(TEST_EMPTY_ROW, EMPTY_AFTER_CLEANING)
    (raw / "train.csv").write_text(format_release_csv(train, AG), encoding="utf-8")
    (raw / "test.csv").write_text(format_release_csv(test, AG), encoding="utf-8")
    (raw / "classes.txt").write_bytes((BUNDLED / "ag_news" / "classes.txt").read_bytes())
    return raw


@pytest.fixture(scope="module")
def built(raw_dir, tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("tokenized") / "ag_news"
    stats = build_tokenized("ag_news", raw_dir, out_dir, PARAMS)
    return out_dir, stats


def raw_tokens(raw_dir: Path, name: str) -> tuple[list[list[str]], np.ndarray]:
    """Tokens and 0-based labels of every row of a raw file, before any split or truncation."""
    documents = parse_release_csv(raw_dir / name, (raw_dir / name).read_text(encoding="utf-8"), AG.num_classes)
    return tokenize_documents(documents, lowercase=True), np.array([d.label for d in documents])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_outputs_are_byte_identical_across_runs(raw_dir, built, tmp_path):
    out_dir, stats = built
    again = build_tokenized("ag_news", raw_dir, tmp_path / "ag_news", PARAMS)
    assert sorted(snapshot(out_dir)) == ["classes.json", "test.npz", "train.npz", "valid.npz", "vocab.json"]
    assert snapshot(tmp_path / "ag_news") == snapshot(out_dir)
    assert again == stats


def test_vocabulary_counts_train_rows_only(raw_dir, built):
    out_dir, _ = built
    tokens, _ = raw_tokens(raw_dir, "train.csv")
    test_tokens, _ = raw_tokens(raw_dir, "test.csv")
    train_rows = load_split(out_dir, "train").source_rows
    counts = Counter(t for row in train_rows for t in tokens[row])
    ranked = sorted((t for t, n in counts.items() if n >= PARAMS.min_freq), key=lambda t: (-counts[t], t))
    vocab = load_vocabulary(out_dir)
    assert vocab.tokens == SPECIAL_TOKENS + tuple(ranked)
    assert read_json(out_dir / "vocab.json") == list(vocab.tokens)

    held_out = Counter(t for row in load_split(out_dir, "valid").source_rows for t in tokens[row])
    held_out.update(t for doc in test_tokens for t in doc)
    only_held_out = {t for t, n in held_out.items() if n >= PARAMS.min_freq and t not in counts}
    assert len(only_held_out) > 20  # frequent enough to enter the vocabulary, had it seen them
    assert not only_held_out & set(vocab.tokens)


def test_splits_partition_the_files_and_skip_empty_documents(raw_dir, built):
    out_dir, stats = built
    _, labels = raw_tokens(raw_dir, "train.csv")
    train, valid, test = (load_split(out_dir, split) for split in SPLITS)
    used = np.concatenate([train.source_rows, valid.source_rows])
    assert len(np.unique(used)) == len(used) == 400
    assert sorted(set(range(401)) - set(used.tolist())) == [TRAIN_EMPTY_ROW]
    np.testing.assert_array_equal(test.source_rows, [r for r in range(151) if r != TEST_EMPTY_ROW])

    empty_label = EMPTY_AFTER_CLEANING.label
    skipped = stats["skipped_empty_after_cleaning"]
    assert skipped["train"] + skipped["valid"] == 1 and skipped["test"] == 1
    held_per_class = np.round(0.2 * np.bincount(labels, minlength=4))  # the empty row counts in its class
    held_per_class[empty_label] -= skipped["valid"]
    np.testing.assert_array_equal(np.bincount(valid.labels, minlength=4), held_per_class)


def test_arrays_hold_the_encoded_truncated_documents(raw_dir, built):
    out_dir, _ = built
    vocab = load_vocabulary(out_dir)
    for split, name in [("train", "train.csv"), ("valid", "train.csv"), ("test", "test.csv")]:
        tokens, labels = raw_tokens(raw_dir, name)
        encoded = load_split(out_dir, split)
        assert encoded.tokens.dtype == np.int32 and encoded.lengths.dtype == np.int32
        assert encoded.labels.dtype == np.int64 and encoded.source_rows.dtype == np.int32
        assert encoded.tokens.shape == (len(encoded), PARAMS.max_length)
        np.testing.assert_array_equal(encoded.labels, labels[encoded.source_rows])
        for row, source in enumerate(encoded.source_rows):
            expected = vocab.encode(tokens[source][: PARAMS.max_length])
            length = encoded.lengths[row]
            assert encoded.tokens[row, :length].tolist() == expected
            assert np.all(encoded.tokens[row, length:] == PAD_ID)


def test_stats_match_the_arrays(raw_dir, built):
    out_dir, stats = built
    assert (stats["dataset"], stats["num_classes"]) == ("ag_news", 4)
    assert stats["vocab_size"] == len(read_json(out_dir / "vocab.json"))
    for split, name in [("train", "train.csv"), ("valid", "train.csv"), ("test", "test.csv")]:
        tokens, _ = raw_tokens(raw_dir, name)
        encoded = load_split(out_dir, split)
        full_lengths = np.array([len(tokens[r]) for r in encoded.source_rows])
        kept = encoded.tokens[np.arange(PARAMS.max_length) < encoded.lengths[:, None]]
        assert stats["splits"][split] == {
            "rows": len(encoded),
            "rows_per_class": np.bincount(encoded.labels, minlength=4).tolist(),
            "oov_rate": round(int((kept == UNK_ID).sum()) / len(kept), 6),
            "mean_length": round(float(full_lengths.mean()), 3),
            "max_length": int(full_lengths.max()),
            "mean_length_truncated": round(float(encoded.lengths.mean()), 3),
            "truncated_rows": int((full_lengths > PARAMS.max_length).sum()),
        }
    assert stats["splits"]["train"]["oov_rate"] > 0  # min_freq 2 leaves train singletons out
    assert stats["splits"]["train"]["truncated_rows"] > 0
    assert stats["splits"]["train"]["rows"] + stats["splits"]["valid"]["rows"] == 400
    assert stats["splits"]["test"]["rows"] == 150


def test_lowercase_off_keeps_case_in_the_vocabulary(raw_dir, tmp_path):
    params = TokenizeSettings(False, 100_000, 2, 24, 0.2, 2025)
    build_tokenized("ag_news", raw_dir, tmp_path / "ag_news", params)
    tokens = load_vocabulary(tmp_path / "ag_news").tokens
    assert "Reuters" in tokens and "reuters" not in tokens


def test_rebuild_replaces_the_previous_output_and_leaves_no_staging(raw_dir, built, tmp_path):
    out_dir = tmp_path / "ag_news"
    out_dir.mkdir()
    (out_dir / "stale.npz").write_bytes(b"from an older run")
    build_tokenized("ag_news", raw_dir, out_dir, PARAMS)
    assert snapshot(out_dir) == snapshot(built[0])
    assert os.listdir(tmp_path) == ["ag_news"]


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'classes.txt'))}: file not found$"):
        build_tokenized("ag_news", tmp_path, tmp_path / "out", PARAMS)
    with pytest.raises(DataError, match=f"^{re.escape(str(tmp_path / 'valid.npz'))}: file not found$"):
        load_split(tmp_path, "valid")
    assert not (tmp_path / "out").exists()
