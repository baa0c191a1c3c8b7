"""Benchmark: GPFQ on the whole calibration set vs. an evenly spaced subset, and the pass size.

For one calibrate cell of the pipeline (its quantized model, calibration rows and activation ranges
must exist: `./run dvc repro pipelines/calibrate-<dataset>-<model>/dvc.yaml:calibrate@<dataset>-<model>-<bits>-<scheme>` first), prints GPFQ wall
time and the final layer's output error against the float model before and after GPFQ, measured on
the same 256 calibration documents for every setting.

    ./run python scripts/bench_gpfq_subset.py --model-type generative
    ./run python scripts/bench_gpfq_subset.py --model-type discriminative --settings 64:all 256:all 256:2048 256:1024
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lstm_ptq.analysis import final_layer_output_error
from lstm_ptq.artifacts import load_arrays
from lstm_ptq.models import load_float_model
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import load_activation_ranges
from lstm_ptq.preprocess import evenly_spaced, load_split
from lstm_ptq.quantization import apply_gpfq, load_quantized, set_activation_ranges, token_batches
from lstm_ptq.settings import QuantizationSettings, load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--model-type", default="generative", choices=["discriminative", "generative"])
    parser.add_argument("--bit-width", type=int, default=4)
    parser.add_argument("--scheme", default="class_conditional")
    parser.add_argument("--settings", nargs="+", default=["64:all", "256:all", "256:2048"], help="pass size:documents (all = whole set)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    paths, quantization = ProjectPaths(Path(args.root)), QuantizationSettings.from_params(load_params(args.params))
    config, float_model = load_float_model(paths, args.dataset, args.model_type)
    rows = load_arrays(paths.calibration_rows(args.dataset, args.model_type))[args.scheme]
    train = load_split(paths.tokenized(args.dataset), "train")
    ranges, _, ranges_file = load_activation_ranges(paths, args.dataset, args.model_type, args.scheme)
    probe = token_batches(train, 64, rows[:256])
    print(f"{args.dataset} {args.model_type} w{args.bit_width} {args.scheme}: {len(rows)} calibration documents, {args.threads} threads")
    for setting in args.settings:
        batch_size, documents = setting.split(":")
        subset = rows[evenly_spaced(len(rows), None if documents == "all" else int(documents))]
        model = load_quantized(paths.quantized(args.dataset, args.model_type, args.bit_width), config, quantization.spec(args.bit_width), calibrated=False)
        set_activation_ranges(model, ranges, str(ranges_file))
        before = final_layer_output_error(model, float_model, probe)
        started = time.perf_counter()
        apply_gpfq(model, token_batches(train, int(batch_size), subset), "gpfq")
        seconds = time.perf_counter() - started
        after = final_layer_output_error(model, float_model, probe)
        print(f"  pass {int(batch_size):4d} docs, GPFQ on {len(subset):5d} docs: {seconds:6.1f} s; final-layer error {before:.4f} -> {after:.4f}")


if __name__ == "__main__":
    main()
