"""Stage ``tokenize@<dataset>``: data/raw/<dataset> -> data/tokenized/<dataset> + metrics/tokenize/<dataset>.json.

(Not named tokenize.py: a script of that name would shadow Python's own ``tokenize`` module.)
"""

import argparse
from pathlib import Path

from lstm_ptq.artifacts import write_json
from lstm_ptq.cli import run_stage
from lstm_ptq.config import TokenizeParams, check_dataset, load_params
from lstm_ptq.preprocess import build_tokenized


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    params = TokenizeParams.from_params(load_params(args.params))
    stats = build_tokenized(args.dataset, Path(args.raw) / args.dataset, Path(args.out) / args.dataset, params)
    write_json(Path(args.metrics) / f"{args.dataset}.json", stats)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--out", default="data/tokenized")
    parser.add_argument("--metrics", default="metrics/tokenize")
    run_stage(main, parser)
