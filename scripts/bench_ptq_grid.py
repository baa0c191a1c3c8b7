"""Benchmark: wall time of every PTQ step of the grid: activation ranges (calibration, once per
scheme), and per cell GPFQ and test evaluation; totals per dataset and model.

Runs the pipeline's own cell functions (lstm_ptq.pipeline.ptq: observe_activation_ranges, refine_cell,
evaluate_cell) on the inputs the last `dvc repro` left (float models, calibration sets, quantized
models, activation ranges) and writes nothing: the pipeline's outputs hold no wall times.

    ./run python scripts/bench_ptq_grid.py
    ./run python scripts/bench_ptq_grid.py --datasets ag_news --model-types generative --bit-widths 4 --schemes class_conditional

Stage start-up (Python, torch and Brevitas imports, DVC bookkeeping) is not in these figures; the
end-to-end wall time of `dvc repro` is the number to compare with the 90-minute budget.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from lstm_ptq.models import load_float_model
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import (
    OBSERVE_BIT_WIDTH,
    calibrate_cell,
    evaluate_cell,
    observe_activation_ranges,
    refine_cell,
    scheme_rows,
)
from lstm_ptq.preprocess import load_split
from lstm_ptq.quantization import token_batches
from lstm_ptq.settings import CalibrationSettings, EvaluateSettings, FinalLayerSettings, GridSettings, QuantizationSettings, load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--datasets", nargs="+", help="default: params grid.datasets")
    parser.add_argument("--model-types", nargs="+", help="default: params grid.model_types")
    parser.add_argument("--bit-widths", nargs="+", type=int, help="default: params grid.bit_widths")
    parser.add_argument("--schemes", nargs="+", help="default: params grid.calibration_schemes")
    args = parser.parse_args()

    params = load_params(args.params)
    paths = ProjectPaths(Path(args.root))
    grid = GridSettings.from_params(params)
    quantization = QuantizationSettings.from_params(params)
    calibration = CalibrationSettings.from_params(params)
    final_layer = FinalLayerSettings.from_params(params)
    datasets = args.datasets or grid.datasets
    model_types = args.model_types or grid.model_types
    bit_widths = args.bit_widths or grid.bit_widths
    schemes = args.schemes or grid.calibration_schemes
    batch_size = EvaluateSettings.from_params(params).batch_size

    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0, 0])
    for dataset in datasets:
        train, test = load_split(paths.tokenized(dataset), "train"), load_split(paths.tokenized(dataset), "test")
        for model_type in model_types:
            _, float_model = load_float_model(paths, dataset, model_type)
            t = totals[(dataset, model_type)]
            print(f"{'activation ranges (calibration)':58s} {'seconds':>9s} {'documents':>9s}")
            for scheme in schemes:
                rows = scheme_rows(paths, dataset, model_type, scheme, len(train))
                started = time.perf_counter()
                _, documents = observe_activation_ranges(float_model, quantization.spec(OBSERVE_BIT_WIDTH), token_batches(train, calibration.batch_size, rows))
                seconds = time.perf_counter() - started
                print(f"{dataset}-{model_type}-{scheme:40s} {seconds:9.1f} {documents:9d}")
                t[0] += seconds
                t[4] += 1
            print(f"\n{'cell':58s} {'gpfq':>7s} {'evaluate':>8s} {'accuracy':>8s}")
            for bit_width in bit_widths:
                for scheme in schemes:
                    cell = calibrate_cell(paths, dataset, model_type, bit_width, scheme, quantization, calibration)
                    qmodel = cell.quantized_model()
                    refinement = refine_cell(qmodel, cell.float_model, cell.train, cell.rows, calibration, final_layer, cell.feed)
                    result, _, evaluate_seconds = evaluate_cell(qmodel, test, batch_size)
                    name = f"{dataset}-{model_type}-w{bit_width}-{scheme}"
                    print(f"{name:58s} {refinement.seconds:7.1f} {evaluate_seconds:8.1f} {result.accuracy:8.4f}")
                    t[1] += refinement.seconds
                    t[2] += evaluate_seconds
                    t[3] += 1
            print()
    grand = 0.0
    cells = 0
    for (dataset, model_type), (cal, gpfq, ev, n, count) in sorted(totals.items()):
        grand += cal + gpfq + ev
        cells += int(n)
        print(
            f"{dataset} {model_type}: {int(count)} range calibrations {cal:.0f} s, {int(n)} cells: "
            f"GPFQ {gpfq:.0f} s + evaluate {ev:.0f} s; total {(cal + gpfq + ev) / 60:.1f} min"
        )
    print(f"grid: {cells} cells, {grand / 60:.1f} min of calibration + GPFQ + evaluation (stage start-up and quantize not included)")


if __name__ == "__main__":
    main()
