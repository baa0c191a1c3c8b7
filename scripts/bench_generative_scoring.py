"""Benchmark: generative scoring of a whole test split, fast path vs. the per-label reference path.

The fast path runs the LSTM once and the decoder once (section 3.2, equations 11-14 with
W[h; l_y] = W_h h + W_l l_y); the reference runs the full model once per label. Prints wall times,
the speed-up and whether the predictions agree.

    ./run python scripts/bench_generative_scoring.py --dataset ag_news --vocab-size 19591
    ./run python scripts/bench_generative_scoring.py --dataset dbpedia --vocab-size 19591 --reference-rows 1000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lstm_ptq.datasets import DATASETS
from lstm_ptq.evaluation import float_scorer, score_split
from lstm_ptq.models import GenerativeLSTM, ModelConfig, generative_label_losses_naive
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.preprocess import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news", choices=sorted(DATASETS))
    parser.add_argument("--vocab-size", type=int, default=19591, help="decoder width V (the cost driver)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--reference-rows", type=int, default=0, help="rows for the per-label path (0 = all)")
    parser.add_argument("--root", default=".", help="the project tree whose tokenized test split is scored")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    test = load_split(ProjectPaths(Path(args.root)).tokenized(args.dataset), "test")
    classes = DATASETS[args.dataset].num_classes
    model = GenerativeLSTM(ModelConfig("generative", args.vocab_size, classes)).eval()
    with torch.no_grad():
        model.label_embedding.weight.mul_(3.0)  # random labels that actually change the scores

    started = time.perf_counter()
    fast = score_split(float_scorer(model), test, args.batch_size)
    fast_seconds = time.perf_counter() - started
    tokens = int(test.lengths.sum())
    print(f"{args.dataset}: {len(test)} documents, {tokens} tokens, {classes} labels, vocabulary {args.vocab_size}, {args.threads} threads")
    print(f"fast path (one LSTM pass, one decoder pass): {fast_seconds:.1f} s")

    rows = np.arange(len(test)) if args.reference_rows <= 0 else np.arange(min(args.reference_rows, len(test)))
    subset = test.subset(rows)
    started = time.perf_counter()
    reference = score_split(lambda tokens, lengths: -generative_label_losses_naive(model, tokens, lengths, classes), subset, args.batch_size)
    reference_seconds = time.perf_counter() - started
    scale = len(test) / len(rows)
    print(f"per-label path on {len(rows)} documents: {reference_seconds:.1f} s (x{scale:.2f} -> {reference_seconds * scale:.1f} s for the split)")
    print(f"speed-up: {reference_seconds * scale / fast_seconds:.1f}x")
    same = np.array_equal(fast[rows].argmax(1), reference.argmax(1))
    relative = float(np.max(np.abs(fast[rows] - reference) / np.abs(reference)))
    print(f"predictions identical: {same}; max relative loss difference: {relative:.2e}")


if __name__ == "__main__":
    main()
