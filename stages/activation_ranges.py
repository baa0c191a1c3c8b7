"""Stage ``activation_ranges@<dataset>-<model_type>-<scheme>``: activation calibration on the scheme's set (section 4.2.2).

The observed ranges do not depend on the bit width; every ``calibrate`` cell of the scheme uses them.
"""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.ptq import activation_ranges_stage
from lstm_ptq.settings import CalibrationSettings, QuantizationSettings

parser = stage_parser(__doc__, "dataset", "model_type", "scheme")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return QuantizationSettings.from_params(params), CalibrationSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    activation_ranges_stage(args.dataset, args.model_type, args.scheme, *settings, args.paths)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
