"""The ``tokenize`` stage: clean, tokenize, split 80/20, build the vocabulary, encode (section 4.3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import load_arrays, read_json, require_array, save_arrays, staged_output, write_json
from .datasets import Document, class_counts, dataset_spec, read_classes, read_release_csv
from .errors import DataError
from .settings import TokenizeSettings
from .splits import stratified_split
from .text import Vocabulary, clean_text, document_text, encode_padded, tokenize

SPLITS = ("train", "valid", "test")


def tokenize_documents(documents: list[Document], lowercase: bool) -> list[list[str]]:
    return tokenize(clean_text(document_text(d.title, d.text), lowercase=lowercase) for d in documents)


@dataclass(frozen=True)
class EncodedSplit:
    """A split as the models consume it. ``tokens`` is right-padded with ``<pad>`` (id 0)."""

    tokens: np.ndarray  # [N, L] int32
    lengths: np.ndarray  # [N] int32, >= 1
    labels: np.ndarray  # [N] int64, 0-based
    source_rows: np.ndarray  # [N] int32: row in data/raw/<dataset>/<file>.csv (0-based)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray) -> EncodedSplit:
        """The documents at positions ``rows`` (in that order), every array indexed alike."""
        return EncodedSplit(self.tokens[rows], self.lengths[rows], self.labels[rows], self.source_rows[rows])


def evenly_spaced(count: int, documents: int | None) -> np.ndarray:
    """``documents`` positions spread evenly over ``range(count)``, first and last included (all of
    them when ``documents`` is None or at least ``count``). Applied to rows in split order, the subset
    keeps their composition (e.g. a calibration set's class mix) up to rounding."""
    if documents is None or documents >= count:
        return np.arange(count)
    return np.linspace(0, count - 1, documents).round().astype(np.int64)


def load_split(tokenized_dir: str | Path, split: str, num_classes: int | None = None) -> EncodedSplit:
    """The split as :func:`build_tokenized` wrote it, every array checked: integer ids >= 0, lengths in
    1..width (a length of 0 has no last real token), labels in 0..num_classes-1 when ``num_classes`` is given
    (negative labels always refused), and one row per document in each array."""
    path = Path(tokenized_dir) / f"{split}.npz"
    arrays = load_arrays(path)
    missing = {"tokens", "lengths", "labels", "source_rows"} - set(arrays)
    if missing:
        raise DataError(f"{path}: missing arrays {sorted(missing)}")
    tokens = require_array(arrays, path, "tokens", ndim=2, kinds="iu", low=0)
    lengths = require_array(arrays, path, "lengths", ndim=1, kinds="iu", low=1, high=tokens.shape[1] + 1)
    labels = require_array(arrays, path, "labels", ndim=1, kinds="iu", low=0, high=num_classes)
    source_rows = require_array(arrays, path, "source_rows", ndim=1, kinds="iu", low=0)
    counts = {"tokens": len(tokens), "lengths": len(lengths), "labels": len(labels), "source_rows": len(source_rows)}
    if len(set(counts.values())) != 1:
        raise DataError(f"{path}: arrays disagree on the number of documents ({counts})")
    return EncodedSplit(tokens, lengths, labels, source_rows)


def load_vocabulary(tokenized_dir: str | Path) -> Vocabulary:
    path = Path(tokenized_dir) / "vocab.json"
    words = read_json(path, expect=list)
    if not all(isinstance(word, str) for word in words):
        raise DataError(f"{path}: expected a JSON array of words (strings)")
    try:
        return Vocabulary(tuple(words))
    except DataError as exc:  # the special tokens out of place, a duplicate word
        raise DataError(f"{path}: {exc}") from None


def _split_stats(
    tokens: list[list[str]], encoded_lengths: np.ndarray, unknown: int, kept: int, labels: np.ndarray, num_classes: int, max_length: int
) -> dict[str, Any]:
    raw_lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    return {
        "rows": int(len(labels)),
        "rows_per_class": class_counts(labels.tolist(), num_classes),
        "oov_rate": round(unknown / kept, 6) if kept else 0.0,
        "mean_length": round(float(raw_lengths.mean()), 3) if len(raw_lengths) else 0.0,
        "max_length": int(raw_lengths.max()) if len(raw_lengths) else 0,
        "mean_length_truncated": round(float(encoded_lengths.mean()), 3) if len(encoded_lengths) else 0.0,
        "truncated_rows": int((raw_lengths > max_length).sum()),
    }


def build_tokenized(dataset: str, raw_dir: Path, out_dir: Path, params: TokenizeSettings) -> dict[str, Any]:
    """Write ``{train,valid,test}.npz``, ``vocab.json`` and ``classes.json`` into ``out_dir``; return stats.

    Documents whose text is empty after cleaning cannot be classified; they are skipped and counted
    in the stats (``skipped_empty_after_cleaning``), never dropped silently.
    """
    spec = dataset_spec(dataset)
    classes = read_classes(raw_dir / "classes.txt", spec)
    train_docs = read_release_csv(raw_dir / "train.csv", spec.num_classes)
    test_docs = read_release_csv(raw_dir / "test.csv", spec.num_classes)

    train_tokens = tokenize_documents(train_docs, params.lowercase)
    test_tokens = tokenize_documents(test_docs, params.lowercase)
    train_labels = np.array([d.label for d in train_docs], dtype=np.int64)
    test_labels = np.array([d.label for d in test_docs], dtype=np.int64)

    keep, valid = stratified_split(train_labels, params.valid_fraction, params.seed, name="tokenize.valid_fraction")
    parts = {
        "train": (keep, train_tokens, train_labels),
        "valid": (valid, train_tokens, train_labels),
        "test": (np.arange(len(test_docs)), test_tokens, test_labels),
    }
    vocabulary = Vocabulary.build((train_tokens[i] for i in keep), params.max_vocab_size, params.min_freq)

    stats: dict[str, Any] = {
        "dataset": dataset,
        "vocab_size": len(vocabulary),
        "num_classes": spec.num_classes,
        "splits": {},
        "skipped_empty_after_cleaning": {},
    }
    with staged_output(out_dir) as staged:
        for split, (rows, all_tokens, all_labels) in parts.items():
            rows = np.array([r for r in rows if all_tokens[r]], dtype=np.int64)
            stats["skipped_empty_after_cleaning"][split] = int(len(parts[split][0]) - len(rows))
            docs = [all_tokens[r] for r in rows]
            tokens, lengths, unknown, kept = encode_padded(docs, vocabulary, params.max_length)
            labels = all_labels[rows]
            save_arrays(staged / f"{split}.npz", tokens=tokens, lengths=lengths, labels=labels, source_rows=rows.astype(np.int32))
            stats["splits"][split] = _split_stats(docs, lengths, unknown, kept, labels, spec.num_classes, params.max_length)
        write_json(staged / "vocab.json", list(vocabulary.tokens))
        write_json(staged / "classes.json", classes)
    return stats
