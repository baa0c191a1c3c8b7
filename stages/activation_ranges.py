"""Stage ``activation_ranges@<dataset>-<model_type>-<scheme>``: activation calibration on the scheme's set (section 4.2.2).

The observed ranges do not depend on the bit width; every ``calibrate`` cell of the scheme uses them.
"""

import argparse
from pathlib import Path

from lstm_ptq.cli import check_model_type, run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.ptq import activation_ranges_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    check_model_type(args.model_type)
    activation_ranges_stage(load_params(args.params), args.dataset, args.model_type, args.scheme, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model_type")
    parser.add_argument("scheme")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
