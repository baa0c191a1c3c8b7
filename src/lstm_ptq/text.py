"""Text cleaning, spaCy tokenization and the training vocabulary (paper section 4.3.1, Figure 2)."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import DataError, ParamError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)

# AG News writes "\" for line breaks and HTML entities with their "&" turned into a space
# ("China #39;s" for "China&#39;s"): that one space is part of the entity.
_HALF_ENTITIES = re.compile(r"(?: |(?<![&\w]))(#\d{1,5};|#x[0-9a-fA-F]{1,4};|quot;|amp;|lt;|gt;|nbsp;|apos;)")
_TAGS = re.compile(r"<[^<>]{0,200}>")
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_NOT_WORD = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")


def _word_separator(match: re.Match[str]) -> str:
    """A run of non-word characters becomes a space, but combining marks stay with their letter
    (Devanagari and Bengali vowel signs, accents): ``\\w`` does not match them."""
    run = match.group()
    if run.isascii():
        return " "
    return "".join(ch if unicodedata.category(ch).startswith("M") else " " for ch in run)


def clean_text(text: str, *, lowercase: bool = True) -> str:
    """Remove punctuation, special characters and excess whitespace (section 4.3.1).

    AG News escapes are repaired first: ``\\`` line breaks become spaces and half-escaped entities
    (``#39;``, ``quot;``) become the characters they stand for, then HTML tags are dropped.
    Apostrophes are removed inside words ("don't" -> "dont"); any other non-alphanumeric character
    separates words. Text is NFC-normalised, and combining marks stay with their letters.
    """
    text = unicodedata.normalize("NFC", text).replace("\\", " ")
    text = _HALF_ENTITIES.sub(lambda m: "&" + m.group(1), text)
    text = html.unescape(html.unescape(text))
    text = _TAGS.sub(" ", text)
    text = _APOSTROPHES.sub("", text)
    text = _NOT_WORD.sub(_word_separator, text)
    text = _SPACES.sub(" ", text).strip()
    return text.lower() if lowercase else text


def document_text(title: str, text: str) -> str:
    """The text a classifier sees: title and body joined."""
    return f"{title.strip()} {text.strip()}".strip()


@lru_cache(maxsize=1)
def _spacy_tokenizer():  # type: ignore[no-untyped-def]
    import spacy

    return spacy.blank("en").tokenizer


def tokenize(texts: Iterable[str], batch_size: int = 1000) -> list[list[str]]:
    """spaCy's English tokenizer rules (``spacy.blank("en")``; no model download)."""
    tokenizer = _spacy_tokenizer()
    return [[token.text for token in doc if not token.is_space] for doc in tokenizer.pipe(texts, batch_size=batch_size)]


@dataclass(frozen=True)
class Vocabulary:
    """Token list in id order; ids 0..3 are ``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``."""

    tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise DataError(f"vocabulary must start with {SPECIAL_TOKENS}, found {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise DataError("vocabulary has duplicate tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def index(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], max_size: int, min_freq: int) -> Vocabulary:
        """Most frequent tokens (ties broken alphabetically) with count >= ``min_freq``, up to ``max_size`` ids."""
        if max_size <= len(SPECIAL_TOKENS):
            raise ParamError(f"tokenize.max_vocab_size: {max_size} must exceed {len(SPECIAL_TOKENS)} (the special tokens)")
        if min_freq < 1:
            raise ParamError(f"tokenize.min_freq: {min_freq} must be >= 1")
        counts = Counter(token for doc in documents for token in doc)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ranked = sorted((item for item in counts.items() if item[1] >= min_freq), key=lambda kv: (-kv[1], kv[0]))
        words = [token for token, _ in ranked[: max_size - len(SPECIAL_TOKENS)]]
        return cls(SPECIAL_TOKENS + tuple(words))

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self.index
        return [index.get(token, UNK_ID) for token in tokens]


def encode_padded(documents: Sequence[Sequence[str]], vocabulary: Vocabulary, max_length: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Encode, truncate to ``max_length`` and right-pad with ``<pad>``.

    Returns (tokens [N, L] int32, lengths [N] int32, number of <unk> tokens, number of tokens kept).
    """
    if max_length < 1:
        raise ParamError(f"tokenize.max_length: {max_length} must be >= 1")
    index = vocabulary.index
    width = max(1, min(max_length, max((len(d) for d in documents), default=1)))
    tokens = np.full((len(documents), width), PAD_ID, dtype=np.int32)
    lengths = np.zeros(len(documents), dtype=np.int32)
    unknown = kept = 0
    for row, doc in enumerate(documents):
        ids = [index.get(token, UNK_ID) for token in doc[:max_length]]
        tokens[row, : len(ids)] = ids
        lengths[row] = len(ids)
        unknown += sum(1 for i in ids if i == UNK_ID)
        kept += len(ids)
    return tokens, lengths, unknown, kept
