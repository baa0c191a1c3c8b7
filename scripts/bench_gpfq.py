"""Benchmark GPFQ on the study's calibrate cells: Brevitas' GPFQ against IncrementalGPFQ (refine.py).

For each ``--cells`` entry (``dataset:model_type:bit_width:scheme``, default: every dataset and model type
of the grid at 4 bits, class-conditional) the cell is set up as the ``calibrate`` stage sets it up (the
quantized model, the scheme's committed activation ranges, its calibration rows and decoder feeding) and
refined by the pipeline's own ``refine_cell``, once with Brevitas' GPFQ, which quantizes the whole weight
matrix again at every column, and once with the pipeline's IncrementalGPFQ, which keeps the quantized
history. Prints GPFQ's wall time (the fastest of ``--repeats``; the error measurement around it is not
counted), whether the refined final layers are bit-identical, and, when the pipeline has run, whether they
equal the committed ``models/calibrated`` checkpoint's.

    ./run python scripts/bench_gpfq.py
    ./run python scripts/bench_gpfq.py --cells ag_news:generative:3:class_conditional --repeats 3
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from bench_cells import SpeedTable, cell_benchmark_args, cell_fields
from brevitas.graph.gpfq import GPFQ, gpfq_mode
from brevitas.quant_tensor import _unpack_quant_tensor

from lstm_ptq.paths import ProjectPaths
from lstm_ptq.pipeline.ptq import CalibrateCell, calibrate_cell, refine_cell
from lstm_ptq.quantization import load_quantized
from lstm_ptq.quantization.refine import FINAL_LAYER_ALGORITHMS
from lstm_ptq.settings import CalibrationSettings, FinalLayerSettings, GridSettings, QuantizationSettings, load_params


@contextmanager
def brevitas_gpfq():
    """The registry's ``gpfq`` entry as Brevitas ships it, for the duration of the block."""
    ours = FINAL_LAYER_ALGORITHMS["gpfq"]
    FINAL_LAYER_ALGORITHMS["gpfq"] = lambda m: gpfq_mode(m, use_quant_activations=True, act_order=False, algorithm_impl=GPFQ)
    try:
        yield
    finally:
        FINAL_LAYER_ALGORITHMS["gpfq"] = ours


def timed_refinement(cell: CalibrateCell, calibration: CalibrationSettings, final_layer: FinalLayerSettings, repeats: int) -> tuple[torch.Tensor, float, int]:
    """The refined final layer's quantized weight, GPFQ's fastest wall time of ``repeats`` (a fresh model each) and its documents."""
    best, weight, documents = float("inf"), torch.empty(0), 0
    for _ in range(repeats):
        qmodel = cell.quantized_model()
        refinement = refine_cell(qmodel, cell.float_model, cell.train, cell.rows, calibration, final_layer, cell.feed)
        best, documents = min(best, refinement.seconds), refinement.documents
        with torch.no_grad():
            weight = _unpack_quant_tensor(qmodel.final_layer.quant_weight()).clone()
    return weight, best, documents


def main() -> None:
    args = cell_benchmark_args(
        __doc__,
        "project root whose pipeline has run up to activation_ranges",
        "dataset:model_type:bit_width:scheme (default: the grid's at 4 bits, class_conditional)",
    )
    root = args.root
    params = load_params(root / "params.yaml")
    quantization, calibration = QuantizationSettings.from_params(params), CalibrationSettings.from_params(params)
    final_layer, grid = FinalLayerSettings.from_params(params), GridSettings.from_params(params)
    if final_layer.algorithm != "gpfq":
        raise SystemExit(f"params.yaml: final_layer.algorithm is {final_layer.algorithm!r}; this benchmark times gpfq")
    cells = args.cells or [f"{d}:{m}:4:class_conditional" for d in grid.datasets for m in grid.model_types]
    paths = ProjectPaths(root)
    table = SpeedTable(46, "Brevitas", "ours")
    addresses = [cell_fields(cell, ("dataset", "model_type", "bit_width", "scheme")) for cell in cells]  # every entry checked first
    for cell, (dataset, model_type, bits, scheme) in zip(cells, addresses, strict=True):
        bit_width = int(bits)
        cell_setup = calibrate_cell(paths, dataset, model_type, bit_width, scheme, quantization, calibration)
        with brevitas_gpfq():
            reference, reference_s, documents = timed_refinement(cell_setup, calibration, final_layer, args.repeats)
        ours, ours_s, _ = timed_refinement(cell_setup, calibration, final_layer, args.repeats)
        committed_file = paths.calibrated(dataset, model_type, bit_width, scheme)
        committed = "-"
        if committed_file.is_file():
            with torch.no_grad():
                stored = load_quantized(committed_file, cell_setup.config, cell_setup.spec).final_layer.quant_weight()
            committed = str(torch.equal(_unpack_quant_tensor(stored), ours))
        table.row(cell, documents, reference_s, ours_s, torch.equal(reference, ours), committed)
    table.total()


if __name__ == "__main__":
    main()
