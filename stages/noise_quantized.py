"""Stage ``noise_quantized@<dataset>-<model_type>-<bit_width>-<scheme>-<noise_model>``: a calibrated
model's accuracy vs noise level (Figure 10)."""

import argparse
from pathlib import Path

from lstm_ptq.cli import check_model_type, parse_bit_width, run_stage
from lstm_ptq.config import check_dataset, load_params
from lstm_ptq.pipeline.noise import quantized_noise_stage


def main(args: argparse.Namespace) -> None:
    check_dataset(args.dataset)
    check_model_type(args.model_type)
    params = load_params(args.params)
    quantized_noise_stage(params, args.dataset, args.model_type, parse_bit_width(args.bit_width), args.scheme, args.noise_model, Path(args.root))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("model_type")
    parser.add_argument("bit_width")
    parser.add_argument("scheme")
    parser.add_argument("noise_model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
