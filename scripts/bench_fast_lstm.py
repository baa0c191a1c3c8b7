"""Benchmark the fast quantized LSTM pass (lstm_ptq.quantization.fast_lstm) against Brevitas' QuantLSTM.

1. The LSTM forward of the discriminative model on one batch of 256 documents of length 40: float
   ``nn.LSTM``, Brevitas' ``QuantLSTM`` and the fast pass, the fastest of ``--repeats`` runs (on 2
   shared cores the median moves by a third from run to run; the minimum is what the code costs).
2. The whole test split scored by a calibrated model at every bit width, with Brevitas and with the
   fast pass: whether the predictions are identical, the largest score difference, and both wall
   times (the generative model's scoring included). The model is the pipeline's calibrated cell
   (``models/calibrated/<dataset>/<model_type>/w<b>/<scheme>``) when it exists; otherwise the float model
   quantized here, with activation ranges observed on ``--calib-rows`` training documents.

    ./run python scripts/bench_fast_lstm.py --dataset ag_news --model-type discriminative
    ./run python scripts/bench_fast_lstm.py --dataset dbpedia --model-type generative --bit-widths 4 3
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lstm_ptq.evaluation import score_split
from lstm_ptq.models import load_float_model
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import OBSERVE_BIT_WIDTH, observe_activation_ranges
from lstm_ptq.preprocess import load_split
from lstm_ptq.quantization import FastQuantLSTM, load_quantized, quantize, set_activation_ranges, token_batches, using_fast_lstm
from lstm_ptq.settings import QuantizationSettings, load_params


def fastest_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=".", help="project root holding models/ and data/tokenized/")
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--model-type", default="discriminative", choices=["discriminative", "generative"])
    parser.add_argument("--bit-widths", type=int, nargs="+", default=[8, 7, 6, 5, 4, 3])
    parser.add_argument("--scheme", default="class_unconditional", help="calibrated cell to load when the pipeline produced it")
    parser.add_argument("--calib-rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-split", action="store_true", help="only the one-batch forward timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paths = ProjectPaths(Path(args.root))
    params = load_params(Path(args.root) / "params.yaml")
    quantization = QuantizationSettings.from_params(params)
    config, float_model = load_float_model(paths, args.dataset, args.model_type)
    train = load_split(paths.tokenized(args.dataset), "train")
    test = load_split(paths.tokenized(args.dataset), "test")
    rows = np.sort(np.random.default_rng(0).permutation(len(train))[: args.calib_rows])
    ranges, _ = observe_activation_ranges(float_model, quantization.spec(OBSERVE_BIT_WIDTH), token_batches(train, 64, rows))

    def calibrated(bit_width: int):
        cell = paths.calibrated(args.dataset, args.model_type, bit_width, args.scheme)
        if cell.exists():
            return load_quantized(cell, config, quantization.spec(bit_width)), f"pipeline cell {cell}"
        model = quantize(float_model, quantization.spec(bit_width))
        set_activation_ranges(model, ranges, "ranges observed here")
        return model, f"ranges observed on {len(rows)} training documents"

    print(f"{args.dataset} {args.model_type}: vocabulary {config.vocab_size}, hidden {config.hidden_size}, {args.threads} threads")
    tokens = torch.as_tensor(test.tokens[: args.batch_size, :40].astype(np.int64))
    with torch.no_grad():
        x = float_model.lstm_inputs(tokens)
        float_s = fastest_seconds(lambda: float_model.lstm(x), args.repeats)
        print(f"LSTM forward, batch {tokens.shape[0]} x length {tokens.shape[1]}: float nn.LSTM {1000 * float_s:.1f} ms")
        for bit_width in args.bit_widths:
            model, _ = calibrated(bit_width)
            qx = model.lstm_inputs(tokens)
            brevitas_s = fastest_seconds(lambda m=model, q=qx: m.lstm(q), args.repeats)
            fast = FastQuantLSTM(model.lstm)
            fast_s = fastest_seconds(lambda f=fast, q=qx: f(q), args.repeats)
            same = torch.equal(fast(qx)[0], model.lstm(qx)[0])
            print(
                f"  w{bit_width}: Brevitas QuantLSTM {1000 * brevitas_s:.1f} ms ({brevitas_s / float_s:.1f}x float), "
                f"fast {1000 * fast_s:.1f} ms ({fast_s / float_s:.2f}x float), outputs identical: {same}"
            )
    if args.skip_split:
        return

    print(f"whole test split: {len(test)} documents, batch {args.batch_size}")
    for bit_width in args.bit_widths:
        model, source = calibrated(bit_width)
        started = time.perf_counter()
        reference = score_split(model.class_scores, test, args.batch_size)
        brevitas_s = time.perf_counter() - started
        started = time.perf_counter()
        with using_fast_lstm(model):
            scores = score_split(model.class_scores, test, args.batch_size)
        fast_s = time.perf_counter() - started
        same = np.array_equal(scores.argmax(axis=1), reference.argmax(axis=1))
        print(
            f"  w{bit_width} ({source}): Brevitas {brevitas_s:.1f} s, fast {fast_s:.1f} s (speed-up {brevitas_s / fast_s:.1f}x); "
            f"predictions identical: {same}; scores identical: {np.array_equal(scores, reference)}, "
            f"largest difference {float(np.abs(scores - reference).max()):.3g}"
        )


if __name__ == "__main__":
    main()
