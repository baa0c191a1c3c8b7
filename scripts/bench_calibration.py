"""Benchmark activation calibration: Brevitas' per-step observers against the fast observer.

For each ``--cells`` entry (``dataset:model_type:scheme``, default: every dataset and model type of the
project's grid under ``class_conditional``), the float model is quantized at the observing bit width and
calibrated on the scheme's calibration set exactly as the ``activation_ranges`` stage does it, once with
Brevitas' own observers (``fast_observer=False``: 13 observer calls per LSTM time step) and once with the
LSTM's observers fed from one float pass (lstm_ptq.quantization.fast_lstm). Prints both wall times
(the fastest of ``--repeats``), whether the ranges are bit-identical, and, when the pipeline has run,
whether they equal the committed ``models/activation_ranges`` file.

    ./run python scripts/bench_calibration.py
    ./run python scripts/bench_calibration.py --cells ag_news:generative:class_conditional --repeats 3
"""

from __future__ import annotations

import time

import torch
from bench_cells import SpeedTable, cell_benchmark_args, cell_fields

from lstm_ptq.artifacts import load_arrays
from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import OBSERVE_BIT_WIDTH, calibration_batches
from lstm_ptq.quantization import activation_ranges, calibrate, quantize
from lstm_ptq.settings import CalibrationSettings, GridSettings, QuantizationSettings, load_params


def timed_calibration(float_model: torch.nn.Module, spec: object, batches: list, fast: bool, repeats: int) -> tuple[dict[str, torch.Tensor], float]:
    """The ranges of one calibration and the fastest of ``repeats`` wall times (a fresh quantized model each time)."""
    best, ranges = float("inf"), {}
    for _ in range(repeats):
        model = quantize(float_model, spec)
        started = time.perf_counter()
        calibrate(model, batches, fast_observer=fast)
        best = min(best, time.perf_counter() - started)
        ranges = activation_ranges(model)
    return ranges, best


def main() -> None:
    args = cell_benchmark_args(
        __doc__, "project root whose pipeline has run up to calibration_sets", "dataset:model_type:scheme (default: the grid's, class_conditional)"
    )
    root = args.root
    params = load_params(root / "params.yaml")
    quantization, calibration, grid = QuantizationSettings.from_params(params), CalibrationSettings.from_params(params), GridSettings.from_params(params)
    cells = args.cells or [f"{d}:{m}:class_conditional" for d in grid.datasets for m in grid.model_types]
    paths = ProjectPaths(root)
    table = SpeedTable(48, "Brevitas", "fast")
    addresses = [cell_fields(cell, ("dataset", "model_type", "scheme")) for cell in cells]  # every entry checked first
    for cell, (dataset, model_type, scheme) in zip(cells, addresses, strict=True):
        float_model, batches = calibration_batches(paths, dataset, model_type, scheme, calibration)
        documents = sum(len(batch[0]) for batch in batches)
        spec = quantization.spec(OBSERVE_BIT_WIDTH)
        reference, reference_s = timed_calibration(float_model, spec, batches, False, args.repeats)
        fast, fast_s = timed_calibration(float_model, spec, batches, True, args.repeats)
        identical = reference.keys() == fast.keys() and all(torch.equal(reference[k], fast[k]) for k in reference)
        committed_file = paths.activation_ranges_file(dataset, model_type, scheme)
        committed = "-"
        if committed_file.is_file():
            arrays = load_arrays(committed_file)
            committed = str(arrays.keys() == fast.keys() and all(torch.equal(torch.as_tensor(arrays[k]).reshape(fast[k].shape), fast[k]) for k in fast))
        table.row(cell, documents, reference_s, fast_s, identical, committed)
    table.total()


if __name__ == "__main__":
    main()
