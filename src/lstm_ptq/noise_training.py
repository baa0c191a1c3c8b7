"""A generative classifier trained with input noise, quantized and tested on noisy input (paper
section 7, Figure 16): its parameters and the corruption of a training split.

The noise-trained model lives in a variant project tree (:meth:`lstm_ptq.paths.ProjectPaths.noise_trained`)
laid out like the main one; :func:`lstm_ptq.pipeline.data.build_noise_trained_data` builds that tree's
data and :func:`lstm_ptq.pipeline.noise.figure16_stage` draws Figure 16 from both trees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import Document
from .errors import DataError
from .noise import CharVocabulary, NoiseModel, corrupt_text, encode_noisy
from .preprocess import EncodedSplit
from .text import Vocabulary, document_text

MODEL_TYPE = "generative"  # section 7 trains the generative classifier with noise
SCHEME = "class_conditional"  # and calibrates it class-conditionally
# Training corruption draws from seed + SEED_OFFSET, so it is independent of the test corruption.
SEED_OFFSET = 1


def corrupt_split(
    clean: EncodedSplit,
    documents: Sequence[Document],
    level: float,
    model: NoiseModel,
    char_vocabulary: CharVocabulary,
    seed: int,
    vocabulary: Vocabulary,
    lowercase: bool,
    max_length: int,
    split_file: str | Path = "split",
    raw_file: str | Path = "raw documents",
) -> tuple[EncodedSplit, dict[str, Any]]:
    """``clean`` re-encoded from its raw ``documents`` (rows ``clean.source_rows``) corrupted once at
    ``level``: same rows, labels and order, the given vocabulary; plus the corruption stats."""
    rows = [int(r) for r in clean.source_rows]
    if rows and max(rows) >= len(documents):
        raise DataError(f"{split_file}: source rows outside {raw_file}; re-run tokenize")
    originals = [document_text(documents[r].title, documents[r].text) for r in rows]
    texts = [corrupt_text(text, level, model, char_vocabulary, seed, r) for text, r in zip(originals, rows)]
    ids, lengths, counts = encode_noisy(originals, texts, vocabulary, lowercase, max_length)
    stats = {
        "documents": len(rows),
        "char_change_rate": counts.char_change_rate,
        "oov_rate": counts.oov_rate,
        "empty_after_cleaning": counts.empty,
    }
    return EncodedSplit(ids, lengths, clean.labels, clean.source_rows), stats
