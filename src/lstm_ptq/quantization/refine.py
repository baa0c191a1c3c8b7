"""Refinement of the final linear layer's quantized weights (section 4.2.3): GPFQ, or GPTQ / Qronos for comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from brevitas.graph.gpfq import GPFQ, gpfq_mode
from brevitas.graph.gptq import gptq_mode
from brevitas.graph.qronos import Qronos
from brevitas.nn import QuantLinear
from brevitas.quant_tensor import _unpack_quant_tensor
from torch import nn

from ..errors import DataError, ParamError
from .activations import Batch, FinalLayerDriver, require_calibrated
from .fast_lstm import using_fast_lstm

if TYPE_CHECKING:
    from .modules import QuantModel


class IncrementalGPFQ(GPFQ):
    """Brevitas' GPFQ with the quantized history of its greedy path kept, not recomputed.

    At step t GPFQ needs the quantized weights of the t columns it has already rewritten; Brevitas gets
    them by quantizing the whole weight matrix again at every step (``with_quant_history`` turns its
    per-column slicing off): 200 quantizations of the [V, 200] generative decoder per cell. Every weight
    scale here is a frozen parameter (``quantize``: PARAMETER_FROM_STATS), so quantization is element-wise,
    and GPFQ writes each column once, at its own step. Each column is therefore quantized once, by
    Brevitas' own sliced ``quant_weight``, the step after it was written, into a history buffer; a step
    reads its first t columns as a contiguous copy, the tensor Brevitas' indexing makes, bit for bit.
    The last step checks the buffer against one full quantization and raises if a column differs (a
    scale that is not frozen would). docs/quantization.md, "GPFQ's quantized history".
    """

    def get_quant_weights(self, i: int, i1: int, permutation_list: list[torch.Tensor], with_quant_history: bool = False) -> torch.Tensor:
        if not with_quant_history or not isinstance(self.layer, QuantLinear) or self.layer.weight_quant.is_groupwise:
            return super().get_quant_weights(i, i1, permutation_list, with_quant_history)
        steps = i1 + i
        order = permutation_list[0]
        if getattr(self, "_history", None) is None:
            self._history = self.layer.weight.new_empty((1, self.layer.weight.shape[0], len(order)))
            self._filled = 0
        while self._filled < steps:  # the columns written at the steps before this one, quantized once each
            self._history[:, :, self._filled] = super().get_quant_weights(self._filled, 0, permutation_list)  # [1, OC]
            self._filled += 1
        if steps == len(order) - 1:
            self._check_history(order)
        return self._history[:, :, :steps].contiguous()

    def _check_history(self, order: torch.Tensor) -> None:
        full = _unpack_quant_tensor(self.layer.quant_weight(quant_input=self.quant_metadata)).unsqueeze(0)
        if not torch.equal(self._history[:, :, : self._filled], full[:, :, order[: self._filled]]):
            raise RuntimeError(f"{self.name}: GPFQ's quantized history differs from a full quantization of the weight (is its scale frozen?)")


def _run_gpfq_family(driver: nn.Module, batches: list[Batch], mode: Callable[..., Any]) -> int:
    with torch.no_grad(), mode(driver) as algorithm:
        layers = algorithm.num_layers
        for _ in range(layers):
            for batch in batches:
                algorithm.model(*batch)
            algorithm.update()
    return layers


FINAL_LAYER_ALGORITHMS: dict[str, Callable[..., Any] | None] = {
    "none": None,
    "gpfq": lambda m: gpfq_mode(m, use_quant_activations=True, act_order=False, algorithm_impl=IncrementalGPFQ),
    "qronos": lambda m: gpfq_mode(m, use_quant_activations=True, act_order=False, algorithm_impl=Qronos),
    "gptq": lambda m: gptq_mode(m, use_quant_activations=True, act_order=False),
}


def check_algorithm(name: Any, where: str = "final_layer.algorithm") -> str:
    if name not in FINAL_LAYER_ALGORITHMS:
        raise ParamError(f"{where}: unknown algorithm {name!r}; expected one of {list(FINAL_LAYER_ALGORITHMS)}")
    return name


def final_layer_weight_scale(model: QuantModel) -> float:
    return float(model.final_layer.quant_weight().scale.detach())


def apply_gpfq(model: QuantModel, batches: Iterable[Batch], algorithm: str = "gpfq") -> dict[str, Any]:
    """Refine the final linear layer's quantized weights on the calibration batches (section 4.3.2).

    GPFQ minimises ||X w - X~ q||^2 (equation 22) with X the FLOAT model's layer input and X~ the
    quantized model's; the LSTM is never touched. The weight scale stays at its value from
    :func:`quantize`. Returns before/after figures of the final layer.
    """
    check_algorithm(algorithm)
    require_calibrated(model)
    if model.final_layer_algorithm != "none":
        raise DataError(f"the final layer was already refined with {model.final_layer_algorithm}")
    batches = list(batches)
    if not batches and algorithm != "none":
        raise DataError("GPFQ calibration set is empty")
    layer = model.final_layer
    with torch.no_grad():
        before = _unpack_quant_tensor(layer.quant_weight()).clone()
    scale_before = final_layer_weight_scale(model)
    mode = FINAL_LAYER_ALGORITHMS[algorithm]
    if mode is not None:
        with using_fast_lstm(model):  # both of GPFQ's passes (quantized, then float) on the fast LSTM: the same rows
            layers = _run_gpfq_family(FinalLayerDriver(model).eval(), batches, mode)
        if layers != 1:
            raise RuntimeError(f"{algorithm} found {layers} layers to refine; expected the final linear layer alone")
    model.final_layer_algorithm = algorithm
    with torch.no_grad():
        after = _unpack_quant_tensor(layer.quant_weight())
    scale_after = final_layer_weight_scale(model)
    if scale_after != scale_before:
        raise RuntimeError(f"the final layer's weight scale moved during {algorithm}: {scale_before} -> {scale_after}")
    return {
        "algorithm": algorithm,
        "weight_scale": scale_before,
        "changed_weight_fraction": float((after != before).float().mean()),
        "max_abs_float_weight": float(layer.weight.detach().abs().max()),
    }
