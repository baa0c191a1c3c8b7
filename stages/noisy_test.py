"""Stage ``noisy_test@<dataset>-<noise_model>``: the test split corrupted at every noise level (section 4.3.3).

Built once per dataset and noise model and reused by every noise evaluation.
"""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.data import noisy_test_stage
from lstm_ptq.settings import NoiseSettings, TextSettings

parser = stage_parser(__doc__, "dataset", "noise_model")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return NoiseSettings.from_params(params), TextSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    noisy_test_stage(args.dataset, args.noise_model, *settings, args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
