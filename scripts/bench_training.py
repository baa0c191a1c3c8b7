"""Benchmark: training throughput (tokens/s) of both classifiers, and the wall time of the training stages.

Measures one epoch per model on the tokenized data with the params of params.yaml, then prints the
training time every ``train`` stage recorded in metrics/train/ during the last `dvc repro`.

    ./run python scripts/bench_training.py --dataset ag_news --rows 4000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from lstm_ptq.config import load_params
from lstm_ptq.datasets import DATASETS
from lstm_ptq.preprocess import EncodedSplit, load_split, load_vocabulary
from lstm_ptq.training import TrainParams, model_config_from_params, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news", choices=sorted(DATASETS))
    parser.add_argument("--rows", type=int, default=4000, help="training rows for the one-epoch measurement")
    args = parser.parse_args()

    params = load_params()
    tokenized = Path("data/tokenized") / args.dataset
    train, valid = load_split(tokenized, "train"), load_split(tokenized, "valid")
    subset = EncodedSplit(train.tokens[: args.rows], train.lengths[: args.rows], train.labels[: args.rows], train.source_rows[: args.rows])
    small_valid = EncodedSplit(valid.tokens[:200], valid.lengths[:200], valid.labels[:200], valid.source_rows[:200])
    vocab = len(load_vocabulary(tokenized))
    for model_type in ("discriminative", "generative"):
        config = model_config_from_params(params, model_type, vocab, DATASETS[args.dataset].num_classes)
        train_params = dataclasses.replace(TrainParams.from_params(params, model_type), max_epochs=1, train_accuracy_rows=1)
        started = time.perf_counter()
        result = train_model(config, train_params, subset, small_valid, progress=False)
        print(
            f"{args.dataset} {model_type}: {result.tokens_per_second:,.0f} tokens/s over {args.rows} rows "
            f"(vocabulary {vocab}, {train_params.num_threads} threads; {time.perf_counter() - started:.1f} s with validation)"
        )

    total = 0.0
    for path in sorted(Path("metrics/train").glob("*/*.json")):
        metrics = json.loads(path.read_text())
        total += metrics["train_seconds"]
        print(f"stage train@{path.parent.name}-{path.stem}: {metrics['train_seconds']:.0f} s of training, {metrics['epochs_run']} epochs, {metrics['tokens_per_second']:,.0f} tokens/s")
    print(f"all training stages: {total / 60:.1f} min of training (as recorded by the last dvc repro)")


if __name__ == "__main__":
    main()
