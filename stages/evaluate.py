"""Stage ``evaluate@<dataset>-<model_type>``: test accuracy, per-class accuracy, confusion matrix, mean loss."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.float import evaluate_stage
from lstm_ptq.settings import EvaluateSettings

parser = stage_parser(__doc__, "dataset", "model_type")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return EvaluateSettings.from_params(params, with_prior=True)


def main(args: argparse.Namespace, settings: Any) -> None:
    evaluate_stage(args.dataset, args.model_type, settings, args.paths)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
