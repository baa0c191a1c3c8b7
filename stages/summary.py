"""Stage ``summary``: metrics/summary.json, the headline numbers and the project's only DVC metric
(float accuracy and 4-/3-bit accuracy under class-conditional and class-unconditional calibration)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.reports import summary_stage
from lstm_ptq.settings import GridSettings

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return GridSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    summary_stage(args.root, settings)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
