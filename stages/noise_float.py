"""Stage ``noise_float@<dataset>-<model_type>-<noise_model>``: float accuracy vs noise level (Figure 9)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.float import float_noise_stage
from lstm_ptq.settings import EvaluateSettings, NoiseSettings

parser = stage_parser(__doc__, "dataset", "model_type", "noise_model")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return NoiseSettings.from_params(params), EvaluateSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    float_noise_stage(args.dataset, args.model_type, args.noise_model, *settings, args.paths)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
