"""Character-level input noise for the robustness tests (paper sections 4.3.3 and 5.5).

Each character of a raw test document (title and text joined, before cleaning) is substituted with
probability ``noise_level`` (epsilon). The noisy text then goes through the SAME cleaning, tokenizer
and TRAINING vocabulary as clean text, so a corrupted word becomes ``<unk>``, as it would on a device.

Coupling: per document, one generator seeded by ``(seed, document id)`` draws, for every character
position i, a uniform ``u_i`` and a uniform ``pick_i``. Position i is corrupted at level epsilon iff
``u_i < epsilon``, and its replacement is chosen by ``pick_i`` whatever the level. A character
corrupted at a low level is therefore corrupted, with the same replacement, at every higher level,
and accuracy-vs-epsilon curves differ only by the added corruption. The document id is its row in
the raw test CSV, so the noise does not depend on document order; both noise models share the draws,
so ``qwerty_typo`` corrupts a subset of the positions ``uniform_substitution`` corrupts.

Noise models (registry :data:`NOISE_MODELS`):

- ``uniform_substitution`` (the paper's): the replacement is drawn uniformly from the character
  vocabulary, the characters seen in the training split's raw text. As in the paper the draw may
  return the original character, so the expected rate of CHANGED characters is
  ``epsilon * (1 - 1/|V|)`` for a character in the vocabulary (``epsilon`` for one outside it); the
  stats report both the substitution rate and the measured change rate.
- ``qwerty_typo``: a letter or digit is replaced by a uniformly chosen neighbouring key on a QWERTY
  keyboard (case preserved; only neighbours present in the character vocabulary); any other
  character has no neighbour and is left alone, so its change rate is below epsilon.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .artifacts import load_arrays, read_json, save_arrays, staged_output, write_json
from .datasets import dataset_spec, read_release_csv
from .errors import DataError, ParamError
from .preprocess import EncodedSplit, load_split, load_vocabulary
from .text import UNK, Vocabulary, clean_text, document_text, encode_padded, tokenize

CHAR_VOCAB_FILE = "char_vocab.json"
STATS_FILE = "stats.json"
DEFAULT_LEVELS = (0.0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.10)
_CHUNK = 2000  # documents corrupted and tokenized together (bounds memory on DBPedia's 70,000 test rows)


# --------------------------------------------------------------------------------------------------
# Character vocabulary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CharVocabulary:
    """The model's character vocabulary: distinct characters of the training text, sorted by code point."""

    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.chars:
            raise DataError("character vocabulary is empty: uniform substitution needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise DataError("character vocabulary entries must be single characters")
        if list(self.chars) != sorted(set(self.chars)):
            raise DataError("character vocabulary must be sorted by code point without duplicates")

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def codes(self) -> np.ndarray:
        return _vocabulary_codes(self).copy()

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocabulary:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(tuple(sorted(seen)))


@lru_cache(maxsize=8)
def _vocabulary_codes(vocabulary: CharVocabulary) -> np.ndarray:
    codes = np.array([ord(c) for c in vocabulary.chars], dtype=np.uint32)
    codes.setflags(write=False)
    return codes


def build_char_vocabulary(documents: Iterable[Any]) -> CharVocabulary:
    """Characters of the raw documents (``title`` and ``text`` joined as the classifier sees them)."""
    return CharVocabulary.from_texts(document_text(d.title, d.text) for d in documents)


def save_char_vocabulary(path: str | Path, vocabulary: CharVocabulary) -> None:
    write_json(path, list(vocabulary.chars))


def load_char_vocabulary(path: str | Path) -> CharVocabulary:
    chars = read_json(path)
    if not isinstance(chars, list):
        raise DataError(f"{path}: expected a JSON list of characters")
    try:
        return CharVocabulary(tuple(chars))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Noise models
# --------------------------------------------------------------------------------------------------

# Replacement for the corrupted positions: (their code points, their pick draws in [0, 1), vocabulary).
Substitute = Callable[[np.ndarray, np.ndarray, CharVocabulary], np.ndarray]


@dataclass(frozen=True)
class NoiseModel:
    name: str
    substitute: Substitute


def _uniform_substitute(codes: np.ndarray, pick: np.ndarray, vocabulary: CharVocabulary) -> np.ndarray:
    table = _vocabulary_codes(vocabulary)
    index = np.minimum((pick * len(table)).astype(np.int64), len(table) - 1)
    return table[index]


_QWERTY_ROWS = (("1234567890", 0.0), ("qwertyuiop", 0.5), ("asdfghjkl", 0.75), ("zxcvbnm", 1.25))


def _qwerty_neighbours() -> dict[str, tuple[str, ...]]:
    """Keys next to each key of a staggered QWERTY keyboard: left/right in the row, and the keys of the
    rows above and below whose centres are less than one key width away horizontally."""
    position = {key: (row, offset + i) for row, (keys, offset) in enumerate(_QWERTY_ROWS) for i, key in enumerate(keys)}
    neighbours: dict[str, tuple[str, ...]] = {}
    for key, (row, x) in position.items():
        near = [
            other
            for other, (other_row, other_x) in position.items()
            if other != key and ((other_row == row and abs(other_x - x) == 1.0) or (abs(other_row - row) == 1 and abs(other_x - x) < 1.0))
        ]
        neighbours[key] = tuple(sorted(near))
        if key.isalpha():
            neighbours[key.upper()] = tuple(sorted(c.upper() for c in near))
    return neighbours


QWERTY_NEIGHBOURS: dict[str, tuple[str, ...]] = _qwerty_neighbours()


@lru_cache(maxsize=8)
def _qwerty_table(vocabulary: CharVocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Per ASCII code: number of neighbours in the vocabulary, and the neighbours' codes (padded)."""
    known = set(vocabulary.chars)
    counts = np.zeros(128, dtype=np.int64)
    table = np.zeros((128, max(len(v) for v in QWERTY_NEIGHBOURS.values())), dtype=np.uint32)
    for key, near in QWERTY_NEIGHBOURS.items():
        present = [ord(c) for c in near if c in known]
        counts[ord(key)] = len(present)
        table[ord(key), : len(present)] = present
    counts.setflags(write=False)
    table.setflags(write=False)
    return counts, table


def _qwerty_substitute(codes: np.ndarray, pick: np.ndarray, vocabulary: CharVocabulary) -> np.ndarray:
    counts, table = _qwerty_table(vocabulary)
    ascii_codes = np.where(codes < 128, codes, 0).astype(np.int64)
    k = np.where(codes < 128, counts[ascii_codes], 0)
    choice = np.minimum((pick * k).astype(np.int64), np.maximum(k - 1, 0))
    return np.where(k > 0, table[ascii_codes, choice], codes).astype(np.uint32)


NOISE_MODELS: dict[str, NoiseModel] = {
    "uniform_substitution": NoiseModel("uniform_substitution", _uniform_substitute),
    "qwerty_typo": NoiseModel("qwerty_typo", _qwerty_substitute),
}


def noise_model(name: str, where: str = "noise.models") -> NoiseModel:
    try:
        return NOISE_MODELS[name]
    except (KeyError, TypeError):
        raise ParamError(f"{where}: unknown noise model {name!r}; expected one of {sorted(NOISE_MODELS)}") from None


# --------------------------------------------------------------------------------------------------
# Corruption
# --------------------------------------------------------------------------------------------------


def check_noise_level(level: Any, where: str = "noise_level") -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not (0.0 <= float(level) <= 1.0):
        raise ParamError(f"{where}: {level!r} is not a noise level in [0, 1]")
    return float(level)


def check_noise_levels(levels: Sequence[Any], where: str = "noise.levels") -> tuple[float, ...]:
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ParamError(f"{where}: {levels!r} is not a non-empty list of noise levels")
    checked = tuple(check_noise_level(level, f"{where}[{i}]") for i, level in enumerate(levels))
    names = [level_name(level) for level in checked]
    if len(set(names)) != len(names):
        raise ParamError(f"{where}: {list(levels)!r} repeats a noise level")
    return checked


def level_name(level: float) -> str:
    """File stem of a noise level's test set: ``0``, ``0.01``, ``0.1``."""
    return format(float(level), "g")


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4").copy()


def _text(codes: np.ndarray) -> str:
    return codes.astype("<u4").tobytes().decode("utf-32-le")


def _draws(length: int, seed: int, document_id: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        ok = not isinstance(document_id, bool) and operator.index(document_id) >= 0 and operator.index(seed) >= 0
    except TypeError:
        ok = False
    if not ok:
        raise ParamError(f"seed {seed!r} and document id {document_id!r} must be integers >= 0")
    draws = np.random.default_rng([int(seed), int(document_id)]).random((2, length))
    return draws[0], draws[1]


def corrupt_levels(text: str, levels: Sequence[float], model: NoiseModel, vocabulary: CharVocabulary, seed: int, document_id: int) -> list[str]:
    """``text`` corrupted at each noise level, coupled across levels (see the module docstring)."""
    levels = [check_noise_level(level) for level in levels]
    codes = _codes(text)
    u, pick = _draws(len(codes), seed, document_id)
    corrupted = np.flatnonzero(u < max(levels, default=0.0))
    replacement = model.substitute(codes[corrupted], pick[corrupted], vocabulary)
    out = []
    for level in levels:
        noisy = codes.copy()
        hit = u[corrupted] < level
        noisy[corrupted[hit]] = replacement[hit]
        out.append(_text(noisy))
    return out


def corrupt_text(text: str, level: float, model: NoiseModel, vocabulary: CharVocabulary, seed: int, document_id: int) -> str:
    """One document at one noise level (section 4.3.3)."""
    return corrupt_levels(text, [level], model, vocabulary, seed, document_id)[0]


def changed_characters(original: str, noisy: str) -> int:
    """Positions whose character differs (substitution keeps the length)."""
    if len(original) != len(noisy):
        raise ValueError("substitution noise must keep the text length")
    return int((_codes(original) != _codes(noisy)).sum())


# --------------------------------------------------------------------------------------------------
# Noisy test sets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoisyCounts:
    """What corruption did to a batch of documents; counts add up over batches (``a + b``)."""

    characters: int = 0  # characters of the original texts
    changed: int = 0  # of them, changed by the noise
    unknown: int = 0  # kept tokens outside the vocabulary
    kept: int = 0  # tokens kept after truncation
    empty: int = 0  # documents left empty by cleaning (encoded as one <unk>)
    tokens: int = 0  # tokens before truncation

    def __add__(self, other: NoisyCounts) -> NoisyCounts:
        return NoisyCounts(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @property
    def char_change_rate(self) -> float:
        return round(self.changed / self.characters, 6) if self.characters else 0.0

    @property
    def oov_rate(self) -> float:
        return round(self.unknown / self.kept, 6) if self.kept else 0.0


def _tokenize_noisy(texts: Sequence[str], lowercase: bool) -> tuple[list[list[str]], int]:
    """Clean and tokenize as the tokenize stage does; a document left empty becomes one ``<unk>``."""
    tokens = tokenize(clean_text(text, lowercase=lowercase) for text in texts)
    empty = 0
    for i, doc in enumerate(tokens):
        if not doc:
            tokens[i] = [UNK]
            empty += 1
    return tokens, empty


def encode_noisy(
    originals: Sequence[str], noisy: Sequence[str], vocabulary: Vocabulary, lowercase: bool, max_length: int
) -> tuple[np.ndarray, np.ndarray, NoisyCounts]:
    """Encode corrupted texts exactly as the tokenize stage encodes clean ones (same cleaning,
    tokenizer and TRAINING vocabulary; a document left empty becomes one ``<unk>``), and count what
    the corruption did relative to the ``originals``. Returns (token ids, lengths, counts)."""
    tokens, empty = _tokenize_noisy(noisy, lowercase)
    ids, lengths, unknown, kept = encode_padded(tokens, vocabulary, max_length)
    counts = NoisyCounts(
        characters=sum(len(t) for t in originals),
        changed=sum(changed_characters(o, t) for o, t in zip(originals, noisy)),
        unknown=unknown,
        kept=kept,
        empty=empty,
        tokens=sum(len(t) for t in tokens),
    )
    return ids, lengths, counts


def _pad_concat(chunks: list[np.ndarray]) -> np.ndarray:
    width = max(chunk.shape[1] for chunk in chunks)
    return np.concatenate([np.pad(chunk, ((0, 0), (0, width - chunk.shape[1]))) for chunk in chunks])


def build_noisy_test_sets(
    dataset: str,
    raw_dir: Path,
    tokenized_dir: Path,
    out_dir: Path,
    noise_model_name: str,
    levels: Sequence[float],
    seed: int,
    lowercase: bool,
    max_length: int,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write ``<level_name>.npz`` per noise level, ``char_vocab.json`` and ``stats.json`` into ``out_dir``.

    Every level holds exactly the documents of the clean test split (``tokenized_dir/test.npz``), in
    its order, in the same format; ``lowercase`` and ``max_length`` must be the tokenize stage's. A
    document that cleans to nothing at some level is kept as a single ``<unk>`` (it must still be
    scored; dropping it would change the document set between levels) and counted in the stats.
    Returns the stats.
    """
    spec = dataset_spec(dataset)
    model = noise_model(noise_model_name)
    levels = check_noise_levels(levels, "levels")
    raw_dir, tokenized_dir, out_dir = Path(raw_dir), Path(tokenized_dir), Path(out_dir)
    vocabulary = load_vocabulary(tokenized_dir)
    clean = load_split(tokenized_dir, "test", spec.num_classes)
    train_rows = load_arrays(tokenized_dir / "train.npz").get("source_rows")
    if train_rows is None:
        raise DataError(f"{tokenized_dir / 'train.npz'}: missing array 'source_rows'")

    train_docs = read_release_csv(raw_dir / "train.csv", spec.num_classes)
    test_docs = read_release_csv(raw_dir / "test.csv", spec.num_classes)
    for name, rows, docs in (("train", train_rows, train_docs), ("test", clean.source_rows, test_docs)):
        if len(rows) and (rows.min() < 0 or rows.max() >= len(docs)):
            raise DataError(f"{tokenized_dir / (name + '.npz')}: source rows outside {raw_dir / (name + '.csv')}; re-run tokenize")
    labels = np.array([test_docs[r].label for r in clean.source_rows], dtype=np.int64)
    if not np.array_equal(labels, clean.labels):
        raise DataError(f"{tokenized_dir / 'test.npz'}: labels do not match {raw_dir / 'test.csv'}; re-run tokenize")
    char_vocabulary = build_char_vocabulary(train_docs[r] for r in train_rows)

    rows = [int(r) for r in clean.source_rows]
    chunks: dict[float, list[tuple[np.ndarray, np.ndarray]]] = {level: [] for level in levels}
    counts = {level: NoisyCounts() for level in levels}
    starts = range(0, len(rows), _CHUNK)
    for start in tqdm(starts, desc=f"noise {dataset} {model.name}", disable=None if progress is None else not progress, leave=False):
        chunk_rows = rows[start : start + _CHUNK]
        originals = [document_text(test_docs[r].title, test_docs[r].text) for r in chunk_rows]
        noisy = [corrupt_levels(text, levels, model, char_vocabulary, seed, r) for text, r in zip(originals, chunk_rows)]
        for j, level in enumerate(levels):
            ids, lengths, chunk_counts = encode_noisy(originals, [versions[j] for versions in noisy], vocabulary, lowercase, max_length)
            chunks[level].append((ids, lengths))
            counts[level] = counts[level] + chunk_counts

    stats: dict[str, Any] = {
        "dataset": dataset,
        "noise_model": model.name,
        "seed": seed,
        "char_vocab_size": len(char_vocabulary),
        "documents": len(rows),
        "levels": {},
    }
    with staged_output(out_dir) as staged:
        for level in levels:
            tokens = _pad_concat([ids for ids, _ in chunks[level]]) if rows else np.zeros((0, 1), dtype=np.int32)
            lengths = np.concatenate([n for _, n in chunks[level]]) if rows else np.zeros(0, dtype=np.int32)
            if level == 0.0 and not (np.array_equal(tokens, clean.tokens) and np.array_equal(lengths, clean.lengths)):
                raise DataError(
                    f"{tokenized_dir / 'test.npz'}: noise level 0 does not reproduce the clean test split;"
                    " lowercase and max_length must be the tokenize stage's"
                )
            save_arrays(staged / f"{level_name(level)}.npz", tokens=tokens, lengths=lengths, labels=clean.labels, source_rows=clean.source_rows)
            c = counts[level]
            stats["levels"][level_name(level)] = {
                "noise_level": level,
                "documents": len(rows),
                "characters": c.characters,
                "char_change_rate": c.char_change_rate,
                "oov_rate": c.oov_rate,
                "empty_after_cleaning": c.empty,
                "mean_length": round(c.tokens / len(rows), 3) if rows else 0.0,
            }
        save_char_vocabulary(staged / CHAR_VOCAB_FILE, char_vocabulary)
        write_json(staged / STATS_FILE, stats)
    return stats


def load_noisy_split(noisy_dir: str | Path, level: float, num_classes: int | None = None) -> EncodedSplit:
    """The test split at one noise level, as written by :func:`build_noisy_test_sets`, checked as :func:`load_split` checks it."""
    return load_split(noisy_dir, level_name(check_noise_level(level)), num_classes)
