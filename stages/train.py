"""Stage ``train@<dataset>-<model_type>``: the full-precision classifier (paper section 4.3.1).

Writes models/float/<dataset>/<model_type>/{model.pt,config.json}, the per-epoch series
plots/train/<dataset>/<model_type>.csv and metrics/train/<dataset>/<model_type>.json.
A run killed between epochs resumes from .cache/train/ when rerun with the same params and data.
"""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.float import train_stage
from lstm_ptq.settings import ModelSettings, TrainSettings

parser = stage_parser(__doc__, "dataset", "model_type")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return ModelSettings.from_params(params), TrainSettings.from_params(params, args.model_type)


def main(args: argparse.Namespace, settings: Any) -> None:
    train_stage(args.dataset, args.model_type, *settings, args.paths)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
