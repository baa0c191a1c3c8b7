"""Quantized checkpoints: a ``weights_only``-loadable file per PTQ cell, refused when it does not match the request."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..artifacts import load_torch, readable_path, save_torch
from ..errors import DataError
from ..models import ModelConfig
from .activations import is_calibrated, require_calibrated
from .modules import build_quant_model
from .refine import check_algorithm
from .spec import QuantSpec

if TYPE_CHECKING:
    from .modules import QuantModel

CHECKPOINT_FORMAT = "lstm_ptq.quantized/1"


def quantized_state_dict(model: QuantModel) -> dict[str, torch.Tensor]:
    """The state dict without GPFQ's ``weight_orig`` copy of the float weights (the float checkpoint has it)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.endswith(".weight_orig")}


def save_quantized(model: QuantModel, path: str | Path, *, calibrated: bool = True) -> None:
    """A ``weights_only``-loadable file: tensors plus the model config, spec and PTQ state.

    ``calibrated=False`` saves the output of :func:`quantize` (the ``quantize`` stage), whose
    activation scales are not set yet; evaluation refuses such a model.
    """
    if calibrated:
        require_calibrated(model)
    elif is_calibrated(model):
        raise DataError("saving as uncalibrated, but the model's activation scales are already calibrated")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "calibrated": calibrated,
        "model_config": model.config.to_dict(),
        "quant_spec": model.spec.to_dict(),
        "final_layer_algorithm": model.final_layer_algorithm,
        "state_dict": quantized_state_dict(model),
    }
    save_torch(path, payload)


def load_quantized(path: str | Path, config: ModelConfig, spec: QuantSpec, *, calibrated: bool = True) -> QuantModel:
    """Load a quantized checkpoint, refusing one built for another model, bit width or quantization setting,
    or one whose calibration state is not ``calibrated``."""
    path = Path(path)
    if not readable_path(path).is_file():
        raise DataError(f"{path}: quantized checkpoint not found")
    payload = load_torch(path, "quantized checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a quantized checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if payload.get("calibrated", True) != calibrated:
        state_name = "calibrated" if payload.get("calibrated", True) else "not calibrated"
        raise DataError(f"{path}: the checkpoint is {state_name}; expected a{'' if calibrated else 'n un'}calibrated model")
    saved_spec = payload.get("quant_spec", {})
    if saved_spec.get("bit_width") != spec.bit_width:
        raise DataError(f"{path}: quantized at bit_width={saved_spec.get('bit_width')!r}, but quantization.bit_width={spec.bit_width} was requested")
    differing = sorted(k for k in spec.to_dict() if saved_spec.get(k) != spec.to_dict()[k])
    if differing:
        raise DataError(
            f"{path}: quantization settings differ from params: "
            + ", ".join(f"quantization.{k}: file {saved_spec.get(k)!r} vs {spec.to_dict()[k]!r}" for k in differing)
        )
    if payload.get("model_config") != config.to_dict():
        raise DataError(f"{path}: model config {payload.get('model_config')} does not match the expected {config.to_dict()}")
    algorithm = check_algorithm(payload.get("final_layer_algorithm"), f"{path}: final_layer_algorithm")
    state = payload["state_dict"]
    model = build_quant_model(config, spec)
    for key in [k for k in state if k.endswith(".weight_orig")]:  # a raw GPFQ state dict
        owner = model.get_submodule(key[: -len(".weight_orig")])
        owner.register_buffer("weight_orig", torch.empty_like(state[key]))
    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith(".value"))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DataError(f"{path}: tensors do not fit the model ({str(exc).splitlines()[-1].strip()})") from None
    missing = sorted(set(result.missing_keys) | set(missing))
    if not calibrated:  # activation scales exist only after calibration
        missing = [k for k in missing if not ("fused_activation_quant_proxy" in k and k.endswith(".value"))]
    if missing or result.unexpected_keys:
        raise DataError(f"{path}: checkpoint does not match the model: missing {missing}, unexpected {sorted(result.unexpected_keys)}")
    model.final_layer_algorithm = algorithm
    model.eval()
    if calibrated:
        require_calibrated(model)
    return model
