"""Stage ``figure16``: clean-trained vs noise-trained generative model on noisy input, per bit width
(plots/noise/figure16/, metrics/figure16.json)."""

import argparse
from pathlib import Path

from lstm_ptq.cli import parse_bit_width, run_stage
from lstm_ptq.config import load_params, section
from lstm_ptq.pipeline.noise import figure16_stage


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    figure16_stage(params, Path(args.root), [parse_bit_width(str(b)) for b in section(params, "quantization.bit_widths")])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
