"""Stage ``noise_train_data@<dataset>``: the noise-trained variant's data (section 7, Figure 16): the
training and validation splits corrupted at ``noise_training.level``, the main tree's clean test split,
vocabulary and noisy test sets, under variants/noise_trained/."""

import argparse
from pathlib import Path

from lstm_ptq.cli import run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.noise import build_noise_trained_data


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    build_noise_trained_data(load_params(args.params), args.dataset, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
