"""Stage ``findings``: reports/findings.md and reports/findings.csv, every claim of the paper judged on the pipeline's outputs."""

import argparse
from collections.abc import Mapping
from typing import Any

from lstm_ptq import warm

warm.delegate(__file__)  # with LSTM_PTQ_WARM=1 a warm runner runs this stage, without the imports' cost (lstm_ptq/warm.py)

from lstm_ptq.cli import run_stage, stage_parser
from lstm_ptq.errors import ParamError
from lstm_ptq.pipeline.analysis_report import grid_axis
from lstm_ptq.pipeline.findings import NoiseGrid, findings_stage
from lstm_ptq.pipeline.trees import tree_run
from lstm_ptq.settings import (
    AnalysisSettings,
    CalibrationSettings,
    FinalLayerSettings,
    NoiseSettings,
    NoiseTrainingSettings,
    QuantizationSettings,
    TrainSettings,
    get_seed,
)

parser = stage_parser(__doc__)


def read_settings(args: argparse.Namespace, params: Mapping[str, Any]) -> Any:
    model_types = grid_axis(params, "model_types")
    quantization, calibration = QuantizationSettings.from_params(params), CalibrationSettings.from_params(params)
    final_layer, analysis = FinalLayerSettings.from_params(params), AnalysisSettings.from_params(params)
    epochs = {m: TrainSettings.from_params(params, m).max_epochs for m in model_types}
    settings = {
        "seed": get_seed(params),
        "bit_widths": grid_axis(params, "bit_widths"),
        "schemes": grid_axis(params, "calibration_schemes"),
        "axes": {
            "quantization.cell_state_bit_width": quantization.cell_state_bit_width or "same",
            "quantization.gate_bit_width": quantization.gate_bit_width or "same",
            "calibration.decoder_feeding": calibration.decoder_feeding,
            "calibration.fraction": calibration.fraction,
            "final_layer.algorithm": final_layer.algorithm,
            "final_layer.documents": final_layer.documents,
            "train max_epochs": ", ".join(f"{m} {e}" for m, e in epochs.items()),
            "analysis.documents": analysis.documents,
        },
        "model_types": model_types,
    }
    trees = [tree_run(args.root, params, name) for name in params.get("trees") or {}]
    return grid_axis(params, "datasets"), settings, trees, noise_grid(params)


def noise_grid(params: Mapping[str, Any]) -> NoiseGrid:
    """The noise cells the noise claims (C13-C15) read."""
    training = NoiseTrainingSettings.from_params(params, with_eval_level=True)
    return NoiseGrid(
        noise_model=training.noise_model,
        levels=NoiseSettings.from_params(params).levels,
        quantized=training.noise_model in grid_axis(params, "noise_quantized_noise_models"),
        schemes=grid_axis(params, "noise_quantized_schemes"),
        eval_level=training.eval_level,
        variant_datasets=grid_axis(params, "noise_trained_datasets"),
    )


def main(args: argparse.Namespace, settings: Any) -> None:
    datasets, values, trees, noise = settings
    # checked here, not in read_settings, so that a grid of one model type still generates a pipeline
    # (scripts/generate_dvc_yaml.py records every stage's reads); only this stage refuses it
    if set(values["model_types"]) != {"discriminative", "generative"}:
        raise ParamError(f"grid.model_types: {list(values['model_types'])!r}; the findings compare both model types, so both must be in the grid")
    findings_stage(args.root, datasets, values["bit_widths"], values["schemes"], values["seed"], values, trees, noise)


if __name__ == "__main__":
    run_stage(parser, read_settings, main)
