"""Stage ``tokenize@<dataset>``: data/raw/<dataset> -> data/tokenized/<dataset> + metrics/tokenize/<dataset>.json.

(Not named tokenize.py: a script of that name would shadow Python's own ``tokenize`` module.)
"""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.data import tokenize_stage
from lstm_ptq.settings import TokenizeSettings

parser = stage_parser(__doc__, "dataset")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return TokenizeSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    tokenize_stage(args.dataset, settings, args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
