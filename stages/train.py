"""Stage ``train@<dataset>-<model_type>``: the full-precision classifier (paper section 4.3.1).

Writes models/float/<dataset>/<model_type>/{model.pt,config.json}, the per-epoch series
plots/train/<dataset>/<model_type>.csv and metrics/train/<dataset>/<model_type>.json.
A run killed between epochs resumes from .cache/train/ when rerun with the same params and data.
"""

import argparse
from pathlib import Path

from lstm_ptq.cli import check_model_type, run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.float import train_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    check_model_type(args.model_type)
    train_stage(load_params(args.params), args.dataset, args.model_type, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model_type")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
