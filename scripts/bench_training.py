"""Benchmark: training throughput (tokens/s) of both classifiers.

Measures one epoch per model on the tokenized data with the params of params.yaml. (The ``train``
stages log their own wall time and throughput to stderr; metrics/train/ holds no wall times.)

    ./run python scripts/bench_training.py --dataset ag_news --rows 4000
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from lstm_ptq.datasets import DATASETS
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.preprocess import load_split, load_vocabulary
from lstm_ptq.settings import ModelSettings, TrainSettings, load_params
from lstm_ptq.training import model_config, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news", choices=sorted(DATASETS))
    parser.add_argument("--rows", type=int, default=4000, help="training rows for the one-epoch measurement")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()

    params = load_params(args.params)
    model_settings = ModelSettings.from_params(params)
    tokenized = ProjectPaths(Path(args.root)).tokenized(args.dataset)
    train, valid = load_split(tokenized, "train"), load_split(tokenized, "valid")
    subset = train.subset(np.arange(min(args.rows, len(train))))
    small_valid = valid.subset(np.arange(min(200, len(valid))))
    vocab = len(load_vocabulary(tokenized))
    for model_type in ("discriminative", "generative"):
        config = model_config(model_settings, model_type, vocab, DATASETS[args.dataset].num_classes)
        train_params = dataclasses.replace(TrainSettings.from_params(params, model_type), max_epochs=1, train_accuracy_rows=1)
        started = time.perf_counter()
        result = train_model(config, train_params, subset, small_valid, progress=False)
        print(
            f"{args.dataset} {model_type}: {result.tokens_per_second:,.0f} tokens/s over {args.rows} rows "
            f"(vocabulary {vocab}, {train_params.num_threads} threads; {time.perf_counter() - started:.1f} s with validation)"
        )


if __name__ == "__main__":
    main()
