"""Stage ``ks_analysis@<dataset>-<model_type>``: KS tests of Figures 12-14 (paper sections 6.1.1, 6.1.2)."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.analysis import ks_analysis_stage
from lstm_ptq.pipeline.analysis_report import grid_axis
from lstm_ptq.settings import AnalysisSettings, EvaluateSettings, QuantizationSettings, get_seed

parser = stage_parser(__doc__, "dataset", "model_type")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return (
        grid_axis(params, "bit_widths"),
        AnalysisSettings.from_params(params),
        QuantizationSettings.from_params(params),
        EvaluateSettings.from_params(params).batch_size,
        get_seed(params),
    )


def main(args: argparse.Namespace, settings: Any) -> None:
    ks_analysis_stage(args.dataset, args.model_type, *settings, args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
