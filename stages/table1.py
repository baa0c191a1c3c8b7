"""Stage ``table1``: the paper's Table 1 (full-precision test accuracy) beside the paper's values."""

import argparse
from pathlib import Path

from lstm_ptq.cli import run_stage
from lstm_ptq.config import check_dataset, load_params, section
from lstm_ptq.pipeline.float import table1_stage


def main(args: argparse.Namespace) -> None:
    datasets = [check_dataset(d, "datasets") for d in section(load_params(args.params), "datasets")]
    print(table1_stage(Path(args.root), datasets), end="")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
