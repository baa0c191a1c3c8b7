"""Stage ``calibration_sets@<dataset>-<model_type>``: rows of every calibration scheme (sections 5.3, 5.4, 6.1)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.calibration_sets import calibration_sets_stage
from lstm_ptq.settings import CalibrationSettings, GridSettings, get_seed

parser = stage_parser(__doc__, "dataset", "model_type")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return GridSettings.from_params(params).calibration_schemes, CalibrationSettings.from_params(params), get_seed(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    calibration_sets_stage(args.dataset, args.model_type, *settings, args.paths)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
