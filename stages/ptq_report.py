"""Stage ``ptq_report``: metrics/ptq_grid.csv and Figures 6, 7, 8, 11 under plots/ptq/."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.reports import ptq_report_stage
from lstm_ptq.settings import GridSettings

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return GridSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    ptq_report_stage(args.root, settings)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
