"""Benchmark one PTQ cell: quantize, calibrate, GPFQ and evaluate, with wall times per step.

The steps are the pipeline's own (lstm_ptq.pipeline.ptq: observe_activation_ranges, refine_cell,
evaluate_cell), run on random calibration rows: calibration observes the ranges at the pipeline's
observation bit width, GPFQ runs on every calibration row, and the final-layer error is measured on
every calibration batch.

Uses a trained float model (``--model-dir`` holding model.pt and config.json, as the train stage
writes them) or, without one, a small model trained here for a few seconds on the tokenized data.
``--jit-compare`` runs the cell twice in fresh processes, with BREVITAS_JIT=0 and =1 (the flag is
read when Brevitas is imported), and reports whether the test scores are bit-identical and faster.

    ./run python scripts/bench_quant_cell.py --model-dir models/float/ag_news/discriminative --bit-width 3
    ./run python scripts/bench_quant_cell.py --model-type generative --jit-compare
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstm_ptq.artifacts import read_json, write_json
from lstm_ptq.evaluation import evaluate, float_scorer, score_split
from lstm_ptq.models import ModelConfig, build_model, load_model, save_state_dict
from lstm_ptq.pipeline.ptq import OBSERVE_BIT_WIDTH, evaluate_cell, observe_activation_ranges, refine_cell
from lstm_ptq.preprocess import EncodedSplit, load_split, load_vocabulary
from lstm_ptq.quantization import FINAL_LAYER_ALGORITHMS, QuantSpec, quant_scorer, quantize, set_activation_ranges, token_batches
from lstm_ptq.settings import CalibrationSettings, FinalLayerSettings


def train_tiny(model_type: str, train: EncodedSplit, vocab_size: int, num_classes: int, steps: int, dims: int) -> nn.Module:
    """A small float model on the real vocabulary (the benchmark needs weights, not accuracy)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_type, vocab_size, num_classes, dims, dims, 1, dims))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        rows = rng.integers(0, len(train), 32)
        lengths = torch.as_tensor(train.lengths[rows].astype(np.int64))
        tokens = torch.as_tensor(train.tokens[rows, : int(lengths.max())].astype(np.int64))
        labels = torch.as_tensor(train.labels[rows])
        loss = nn.functional.cross_entropy(model(tokens, lengths), labels) if model_type == "discriminative" else model(tokens, lengths, labels).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def prepare_model_dir(args: argparse.Namespace, out: Path) -> Path:
    if args.model_dir:
        return Path(args.model_dir)
    tokenized = Path(args.tokenized)
    train = load_split(tokenized, "train")
    classes = int(train.labels.max()) + 1
    start = time.perf_counter()
    model = train_tiny(args.model_type, train, len(load_vocabulary(tokenized).tokens), classes, args.train_steps, args.dims)
    print(f"trained a tiny {args.model_type} model ({args.train_steps} steps, dims {args.dims}) in {time.perf_counter() - start:.1f} s", flush=True)
    save_state_dict(out / "model.pt", model.state_dict())
    write_json(out / "config.json", model.config.to_dict())
    return out


def run_cell(args: argparse.Namespace, model_dir: Path) -> dict:
    torch.set_num_threads(args.threads)
    config = ModelConfig.from_dict(read_json(model_dir / "config.json"))
    float_model = load_model(config, model_dir / "model.pt")
    tokenized = Path(args.tokenized)
    train, test = load_split(tokenized, "train"), load_split(tokenized, "test")
    calib_rows = np.sort(np.random.default_rng(0).permutation(len(train))[: args.calib_rows])
    test = test.subset(np.arange(min(args.eval_rows, len(test))))
    batches = token_batches(train, args.calib_batch_size, calib_rows)
    calibration = CalibrationSettings(fraction=len(calib_rows) / len(train), batch_size=args.calib_batch_size, decoder_feeding="all_labels")
    final_layer = FinalLayerSettings(algorithm=args.algorithm, batch_size=args.calib_batch_size, documents=None, error_batches=len(batches))
    times: dict[str, float] = {}

    start = time.perf_counter()
    model = quantize(float_model, QuantSpec(bit_width=args.bit_width))
    times["quantize_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranges, _ = observe_activation_ranges(float_model, QuantSpec(bit_width=OBSERVE_BIT_WIDTH), batches)
    set_activation_ranges(model, ranges, "observed ranges")
    times["calibrate_s"] = time.perf_counter() - start
    refinement = refine_cell(model, float_model, train, calib_rows, calibration, final_layer)
    times[f"{args.algorithm}_s"] = refinement.seconds
    result, stats, times["evaluate_s"] = evaluate_cell(model, test, args.batch_size)
    start = time.perf_counter()
    float_scores = score_split(float_scorer(float_model), test, args.batch_size)
    times["evaluate_float_s"] = time.perf_counter() - start
    scores = score_split(quant_scorer(model), test, args.batch_size)
    return {
        "model_type": config.model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "bit_width": args.bit_width,
        "algorithm": args.algorithm,
        "calibration_documents": int(len(calib_rows)),
        "test_documents": int(len(test)),
        "threads": args.threads,
        "jit": os.environ.get("BREVITAS_JIT", "0"),
        **{k: round(v, 3) for k, v in times.items()},
        "final_layer_error_rounding": round(refinement.error_before, 6),
        f"final_layer_error_{args.algorithm}": round(refinement.error_after, 6),
        "accuracy_quantized": round(result.accuracy, 4),
        "accuracy_float": round(evaluate(float_scores, test.labels).accuracy, 4),
        "hidden_state": {k: round(v, 4) for k, v in stats.items()},
        "_scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="directory with model.pt and config.json (default: train a tiny model)")
    parser.add_argument("--model-type", default="discriminative", choices=["discriminative", "generative"])
    parser.add_argument("--tokenized", default="data/tokenized/ag_news")
    parser.add_argument("--bit-width", type=int, default=4)
    parser.add_argument("--algorithm", default="gpfq", choices=list(FINAL_LAYER_ALGORITHMS))
    parser.add_argument("--calib-rows", type=int, default=1000)
    parser.add_argument("--calib-batch-size", type=int, default=64)
    parser.add_argument("--eval-rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--dims", type=int, default=64)
    parser.add_argument("--jit-compare", action="store_true", help="run with BREVITAS_JIT=0 and =1 in fresh processes")
    parser.add_argument("--dump", help=argparse.SUPPRESS)  # child mode: write results here
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # also for the tiny training run: oversubscribed threads crawl

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = prepare_model_dir(args, Path(tmp))
        if args.dump:
            result = run_cell(args, model_dir)
            np.save(Path(args.dump) / "scores.npy", result.pop("_scores"))
            write_json(Path(args.dump) / "result.json", result)
            return
        if not args.jit_compare:
            result = run_cell(args, model_dir)
            result.pop("_scores")
            print(json.dumps(result, indent=2))
            return
        results = {}
        for jit in ("0", "1"):
            dump = Path(tmp) / f"jit{jit}"
            dump.mkdir()
            argv = [a for a in sys.argv[1:] if a != "--jit-compare"] + ["--model-dir", str(model_dir), "--dump", str(dump)]
            subprocess.run([sys.executable, __file__, *argv], check=True, env={**os.environ, "BREVITAS_JIT": jit})
            results[jit] = read_json(dump / "result.json")
        scores = {jit: np.load(Path(tmp) / f"jit{jit}" / "scores.npy") for jit in results}
        for result in results.values():
            print(json.dumps(result, indent=2))
        same = bool(np.array_equal(scores["0"], scores["1"]))
        keys = [k for k in results["0"] if k.endswith("_s")]
        print(f"BREVITAS_JIT=1 scores bit-identical to JIT=0: {same}")
        for key in keys:
            print(f"  {key:22s} JIT=0 {results['0'][key]:8.3f} s   JIT=1 {results['1'][key]:8.3f} s")


if __name__ == "__main__":
    main()
