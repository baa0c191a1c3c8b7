"""Activation calibration (section 4.2.2): every activation scale from label-free ``(tokens, lengths)`` batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from brevitas.graph.calibrate import calibration_mode
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjectorBase
from torch import nn

from ..errors import DataError, ParamError
from ..evaluation import batch_tensors
from ..preprocess import EncodedSplit

if TYPE_CHECKING:
    from .modules import QuantModel

# (tokens [B, L], lengths [B]), plus, only under calibration.decoder_feeding true_label / predicted_label,
# the one label per document the generative decoder is fed; class labels never travel otherwise.
Batch = tuple[torch.Tensor, ...]


def token_batches(split: EncodedSplit, batch_size: int, rows: Sequence[int] | np.ndarray | None = None, feed_labels: np.ndarray | None = None) -> list[Batch]:
    """``(tokens, lengths)`` batches of ``split`` (or of its ``rows``) in length order, each trimmed to its
    longest document, so the LSTM's observers see as little padding as possible; with ``feed_labels``
    (one per row of the split) each batch carries its documents' labels third."""
    if batch_size < 1:
        raise ParamError(f"batch_size: {batch_size!r} must be >= 1")
    index = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
    index = index[np.argsort(split.lengths[index], kind="stable")]
    batches = []
    for start in range(0, len(index), batch_size):
        chunk = index[start : start + batch_size]
        batch = batch_tensors(split, chunk)
        batches.append(batch if feed_labels is None else (*batch, torch.as_tensor(np.asarray(feed_labels)[chunk], dtype=torch.long)))
    return batches


def _activation_scalings(model: nn.Module) -> list[ParameterFromRuntimeStatsScaling]:
    return [m for m in model.modules() if isinstance(m, ParameterFromRuntimeStatsScaling)]


def is_calibrated(model: nn.Module) -> bool:
    """True once every activation scale has been set from calibration statistics."""
    scalings = _activation_scalings(model)
    return bool(scalings) and all(int(m.counter) > int(m.collect_stats_steps) for m in scalings)


def require_calibrated(model: nn.Module) -> None:
    if not is_calibrated(model):
        raise DataError(
            f"quantized {getattr(model, 'model_type', 'model')} model is not calibrated: its activation scales are "
            "still at their initial value; run calibrate() (or load a calibrated checkpoint) before evaluation"
        )


def activation_scales(model: nn.Module) -> dict[str, float]:
    """Scale of every activation quantizer, by module name (after calibration: the calibrated scales)."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, ActQuantProxyFromInjectorBase) and module.is_quant_enabled:
            out[name] = float(module.scale().detach())
    return out


class FinalLayerDriver(nn.Module):
    """Runs a quantized model up to its final linear layer on label-free ``(tokens, lengths)``.

    The module Brevitas' calibration and GPxQ modes wrap; the pass is the model's ``final_layer_pass``.
    """

    def __init__(self, model: QuantModel, observe_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.observe_only = observe_only

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.final_layer_pass(tokens, lengths, self.observe_only, feed_labels)


def calibrate(model: QuantModel, batches: Iterable[Batch], fast_observer: bool = True) -> int:
    """Set every activation scale from the batches (section 4.2.2); returns the number of documents.

    Activation quantizers run as observers on a float forward pass (weights unquantized), each
    averaging its per-call percentile over calls; every LSTM time step is one call. The LSTM's
    observers are fed from one float pass (:func:`fast_lstm.observing_lstm`, the same ranges bit for
    bit); ``fast_observer=False`` runs Brevitas' own per-step calls, the reference the tests compare with.
    """
    from .fast_lstm import observing_lstm  # fast_lstm imports this module

    if model.final_layer_algorithm != "none":
        raise DataError(f"calibration after {model.final_layer_algorithm} is refused: the final layer's weights were already changed")
    if is_calibrated(model):
        raise DataError("model is already calibrated; quantize the float model again to recalibrate")
    batches = list(batches)
    if not batches:
        raise DataError("calibration set is empty")
    driver = FinalLayerDriver(model, observe_only=True).eval()
    documents = 0
    with torch.no_grad(), calibration_mode(driver), observing_lstm(model) if fast_observer else nullcontext():
        for batch in batches:
            driver(*batch)
            documents += int(batch[0].shape[0])
    if not is_calibrated(model):
        raise RuntimeError("an activation quantizer saw no data during calibration")
    return documents


def activation_ranges(model: QuantModel) -> dict[str, torch.Tensor]:
    """The calibrated range of every activation quantizer, by module name.

    Brevitas keeps an activation quantizer's calibrated statistic (the averaged percentile of |a|)
    and divides it by the integer range of the bit width only when it computes the scale. The
    statistic is collected on a float forward pass, so it does not depend on the bit width: the
    ranges of one calibration serve every bit width (see :func:`set_activation_ranges`).
    """
    require_calibrated(model)
    return {name: m.value.detach().clone() for name, m in model.named_modules() if isinstance(m, ParameterFromRuntimeStatsScaling)}


def set_activation_ranges(model: QuantModel, ranges: Mapping[str, torch.Tensor], source: str) -> None:
    """Calibrate ``model`` with ranges from :func:`activation_ranges` of the same architecture.

    The result is the state :func:`calibrate` leaves on the same calibration data (a test checks
    that they are identical); ``source`` names the file the ranges came from, for errors.
    """
    if model.final_layer_algorithm != "none":
        raise DataError(f"{source}: activation ranges cannot be set after {model.final_layer_algorithm} changed the final layer")
    if is_calibrated(model):
        raise DataError(f"{source}: model is already calibrated; quantize the float model again to recalibrate")
    scalings = {name: m for name, m in model.named_modules() if isinstance(m, ParameterFromRuntimeStatsScaling)}
    missing, unexpected = sorted(set(scalings) - set(ranges)), sorted(set(ranges) - set(scalings))
    if missing or unexpected:
        raise DataError(f"{source}: activation ranges do not match the model: missing {missing}, unexpected {unexpected}")
    for name, module in scalings.items():
        value = torch.as_tensor(ranges[name], dtype=module.value.dtype)
        if value.numel() != module.value.numel():  # files may store a per-tensor range as shape () or (1,)
            raise DataError(f"{source}: range {name!r} has {value.numel()} values, expected {module.value.numel()}")
        value = value.reshape(module.value.shape)
        if not bool(torch.isfinite(value).all()) or not bool((value > 0).all()):
            raise DataError(f"{source}: range {name!r} = {value.tolist()} is not a positive finite number")
        with torch.no_grad():
            module.value.copy_(value)
        module.counter = int(module.collect_stats_steps) + 1
