"""Shared fixtures: small REAL datasets built from the bundled rows through the real tokenize code.

Tests never read data/raw or data/tokenized of the working tree (a fresh clone has neither); they
build what they need here, in a temporary project root laid out like the real one.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstm_ptq.datasets import DATASETS, format_release_csv, parse_release_csv
from lstm_ptq.preprocess import EncodedSplit, build_tokenized
from lstm_ptq.settings import TokenizeSettings

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "data" / "bundled"


def bundled_rows(dataset: str, name: str, limit: int | None = None, stride: int = 1):
    path = BUNDLED / dataset / f"{name}.gz"
    docs = parse_release_csv(path, gzip.decompress(path.read_bytes()).decode("utf-8"), DATASETS[dataset].num_classes)
    return docs[::stride][:limit]


def make_small_project(root: Path, dataset: str, train_rows: int, test_rows: int, max_vocab_size: int = 3000, max_length: int = 40) -> Path:
    """A project root with data/raw/<dataset> and data/tokenized/<dataset> built from real rows."""
    spec = DATASETS[dataset]
    raw = root / "data" / "raw" / dataset
    raw.mkdir(parents=True)
    docs = bundled_rows(dataset, "train.csv", stride=7)
    test_docs = bundled_rows(dataset, "test.csv", limit=test_rows, stride=13) if dataset == "ag_news" else docs[train_rows : train_rows + test_rows]
    (raw / "train.csv").write_text(format_release_csv(docs[:train_rows], spec), encoding="utf-8")
    (raw / "test.csv").write_text(format_release_csv(test_docs, spec), encoding="utf-8")
    (raw / "classes.txt").write_bytes((BUNDLED / dataset / "classes.txt").read_bytes())
    params = TokenizeSettings(lowercase=True, max_vocab_size=max_vocab_size, min_freq=1, max_length=max_length, valid_fraction=0.2, seed=7)
    build_tokenized(dataset, raw, root / "data" / "tokenized" / dataset, params)
    return root


def train_briefly(model: nn.Module, train: EncodedSplit, steps: int, batch_size: int, learning_rate: float, seed: int) -> nn.Module:
    """Adam on ``steps`` random batches of real rows: weights worth quantizing in seconds, not accuracy.
    ``model``'s initial weights must already be drawn (``torch.manual_seed`` before building it)."""
    torch.set_num_threads(1)  # module fixtures run before the autouse single-thread fixture
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = rng.integers(0, len(train), batch_size)
        lengths = torch.as_tensor(train.lengths[rows].astype(np.int64))
        tokens = torch.as_tensor(train.tokens[rows, : int(lengths.max())].astype(np.int64))
        labels = torch.as_tensor(train.labels[rows])
        if model.model_type == "discriminative":
            loss = nn.functional.cross_entropy(model(tokens, lengths), labels)
        else:
            loss = model(tokens, lengths, labels).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def small_ag_news(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Project root holding 1,500 real AG News training rows and 400 official test rows, tokenized."""
    return make_small_project(tmp_path_factory.mktemp("ag_news_project"), "ag_news", 1500, 400)


@pytest.fixture(autouse=True)
def _single_thread() -> None:
    """Two cores are shared with everything else; tests stay on one thread for repeatable timings."""
    torch.set_num_threads(1)
