"""Stage ``download@<dataset>``: write data/raw/<dataset>/{train,test}.csv and classes.txt."""

import argparse
from pathlib import Path

from lstm_ptq.cli import run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.data import download_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    download_stage(load_params(args.params), args.dataset, Path(args.bundled), Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bundled", default="data/bundled")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
