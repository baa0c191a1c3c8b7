"""Stage ``per_class@<dataset>-<model_type>``: per-class accuracy drops and score variances of every calibrated cell."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.analysis_report import grid_axis, per_class_stage

parser = stage_parser(__doc__, "dataset", "model_type")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return grid_axis(params, "bit_widths"), grid_axis(params, "calibration_schemes")


def main(args: argparse.Namespace, settings: Any) -> None:
    per_class_stage(args.dataset, args.model_type, *settings, args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
