"""Stage ``ptq_report``: metrics/ptq_grid.csv and Figures 6, 7, 8, 11 under plots/ptq/."""

import argparse
from pathlib import Path

from lstm_ptq.calibration import check_scheme
from lstm_ptq.cli import check_model_type, parse_bit_width, run_stage
from lstm_ptq.config import check_dataset, load_params, section
from lstm_ptq.pipeline.ptq import ptq_report_stage


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    datasets = [check_dataset(d, "datasets") for d in section(params, "datasets")]
    model_types = [check_model_type(m, "model_types") for m in section(params, "model_types")]
    bit_widths = [parse_bit_width(str(b)) for b in section(params, "quantization.bit_widths")]
    schemes = [check_scheme(s) for s in section(params, "calibration.schemes")]
    ptq_report_stage(Path(args.root), datasets, model_types, bit_widths, schemes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    run_stage(main, parser)
