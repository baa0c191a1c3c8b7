"""Stage ``evaluate@<dataset>-<model_type>``: test accuracy, per-class accuracy, confusion matrix, mean loss."""

import argparse
from pathlib import Path

from lstm_ptq.cli import check_model_type, run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.float import evaluate_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    check_model_type(args.model_type)
    evaluate_stage(load_params(args.params), args.dataset, args.model_type, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model_type")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
