"""Stage ``noise_train_data@<dataset>``: the noise-trained variant's data (section 7, Figure 16): the
training and validation splits corrupted at ``noise_training.level``, the main tree's clean test split,
vocabulary and noisy test sets, under variants/noise_trained/."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.pipeline.data import build_noise_trained_data
from lstm_ptq.settings import NoiseSettings, NoiseTrainingSettings, TextSettings

parser = stage_parser(__doc__, "dataset")


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    return NoiseTrainingSettings.from_params(params), NoiseSettings.from_params(params), TextSettings.from_params(params)


def main(args: argparse.Namespace, settings: Any) -> None:
    build_noise_trained_data(args.dataset, *settings, args.root)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
