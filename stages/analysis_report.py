"""Stage ``analysis_report``: Figures 12-15 and the per-class figure under plots/analysis (paper section 6)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.analysis_report import analysis_report_stage, grid_axis
from lstm_ptq.settings import AnalysisSettings

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    axes = tuple(grid_axis(params, key) for key in ("datasets", "model_types", "bit_widths", "calibration_schemes"))
    return (*axes, AnalysisSettings.from_params(params).kde_points)


def main(args: argparse.Namespace, settings: Any) -> None:
    analysis_report_stage(args.root, *settings)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
