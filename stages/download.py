"""Stage ``download@<dataset>``: write data/raw/<dataset>/{train,test}.csv and classes.txt."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.data import download_stage
from lstm_ptq.settings import DownloadSettings

parser = stage_parser(__doc__, "dataset")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return DownloadSettings.from_params(params, args.dataset)


def main(args: argparse.Namespace, settings: Any) -> None:
    download_stage(settings, args.root / "data" / "bundled", args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
