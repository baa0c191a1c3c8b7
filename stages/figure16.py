"""Stage ``figure16``: clean-trained vs noise-trained generative model on noisy input, per bit width
(plots/noise/figure16/, metrics/figure16.json)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.reports import figure16_stage
from lstm_ptq.settings import GridSettings, NoiseTrainingSettings

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return GridSettings.from_params(params), NoiseTrainingSettings.from_params(params, with_eval_level=True)


def main(args: argparse.Namespace, settings: Any) -> None:
    figure16_stage(args.root, *settings)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
