"""Stage ``noisy_test@<dataset>-<noise_model>``: the test split corrupted at every noise level (section 4.3.3).

Built once per dataset and noise model and reused by every noise evaluation.
"""

import argparse
from pathlib import Path

from lstm_ptq.cli import run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.noise import noise_model
from lstm_ptq.pipeline.data import noisy_test_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    noise_model(args.noise_model, "noise_model")
    noisy_test_stage(load_params(args.params), args.dataset, args.noise_model, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("noise_model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
