"""Stage ``noise_float@<dataset>-<model_type>-<noise_model>``: float accuracy vs noise level (Figure 9)."""

import argparse
from pathlib import Path

from lstm_ptq.cli import check_model_type, run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.noise import noise_model
from lstm_ptq.pipeline.float import float_noise_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    check_model_type(args.model_type)
    noise_model(args.noise_model, "noise_model")
    float_noise_stage(load_params(args.params), args.dataset, args.model_type, args.noise_model, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model_type")
    parser.add_argument("noise_model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
