"""Stage ``download@<dataset>``: write data/raw/<dataset>/{train,test}.csv and classes.txt."""

import argparse
from pathlib import Path

from lstm_ptq.cli import run_stage
from lstm_ptq.config import DownloadParams, check_dataset, load_params
from lstm_ptq.download import run_download


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    params = DownloadParams.from_params(load_params(args.params), args.dataset)
    run_download(params, Path(args.bundled), Path(args.out) / args.dataset)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--bundled", default="data/bundled")
    parser.add_argument("--out", default="data/raw")
    run_stage(main, parser)
