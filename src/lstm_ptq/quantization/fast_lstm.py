"""A fast forward pass of a calibrated Brevitas ``QuantLSTM``: the same quantized values, fewer operations.

Brevitas' QuantLSTM runs each of its 11 quantization points through its proxy machinery at every time
step and each gate as its own pair of matrix products. Here every quantizer is read once into plain
tensors (scale, integer bounds) and a step is one recurrent matrix product for the four gates plus a
few element-wise operations. The arithmetic is Brevitas' own, operation for operation: ``x / scale``,
round half to even, clamp to the integer range, ``* scale``; the input-to-hidden and hidden-to-hidden
products are added before the bias, as in its cell. So the outputs are the QuantLSTM's bit for bit
wherever a gate's product columns equal the per-gate products (``tests/test_fast_lstm.py`` checks
this at every bit width; ``scripts/bench_fast_lstm.py`` measures the speed). Brevitas stays the
reference and the only path for calibration and GPFQ; this pass is for evaluation of a model whose
scales are final.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from brevitas.quant_tensor import _unpack_quant_tensor
from torch import nn

from .activations import require_calibrated

# QuantLSTM's gates in the order the fast pass stacks them: the three sigmoid gates, then the cell gate.
_GATES = ("input", "forget", "output", "cell")
_ACC_POINTS = {"input": "input_acc_quant", "forget": "forget_acc_quant", "output": "output_acc_quant", "cell": "cell_acc_quant"}
_ACT_POINTS = {"input": "input_sigmoid_quant", "forget": "forget_sigmoid_quant", "output": "output_sigmoid_quant", "cell": "cell_tanh_quant"}


@dataclass(frozen=True)
class _Point:
    """One quantization point: scale and integer bounds, or ``None`` where the point is disabled."""

    scale: torch.Tensor | None
    min_int: torch.Tensor | None
    max_int: torch.Tensor | None


def _point(proxy: nn.Module) -> _Point:
    """The scale and integer range Brevitas applies at ``proxy`` (a cell's activation quantizer)."""
    if not proxy.is_quant_enabled:
        return _Point(None, None, None)
    fused = proxy.fused_activation_quant_proxy
    int_quant = fused.tensor_quant.int_quant
    bit_width = proxy.bit_width().detach()
    if float(proxy.zero_point()) != 0.0:
        raise ValueError(f"{type(proxy).__name__}: the fast LSTM supports symmetric quantizers only (zero point {float(proxy.zero_point())})")
    return _Point(proxy.scale().detach().reshape(()), int_quant.min_int(bit_width).detach(), int_quant.max_int(bit_width).detach())


def _stacked(points: list[_Point], width: int) -> _Point:
    """Per-column scale and bounds of the four gates stacked side by side (each gate ``width`` columns)."""
    if all(p.scale is None for p in points):
        return _Point(None, None, None)
    if any(p.scale is None for p in points):
        raise ValueError("the fast LSTM needs the gate quantizers all enabled or all disabled")
    return _Point(*(torch.cat([getattr(p, field).expand(width) for p in points]) for field in ("scale", "min_int", "max_int")))


def _quant(x: torch.Tensor, scale: torch.Tensor | None, min_int: torch.Tensor | None, max_int: torch.Tensor | None) -> torch.Tensor:
    """Brevitas' IntQuant with a zero zero-point: ``clamp(round(x / scale)) * scale``."""
    if scale is None or min_int is None or max_int is None:
        return x
    return torch.clamp(torch.round(x / scale), min_int, max_int) * scale


@torch.jit.script
def _steps(
    projected: torch.Tensor,
    weight_hh: torch.Tensor,
    bias: torch.Tensor,
    acc_scale: torch.Tensor,
    acc_min: torch.Tensor,
    acc_max: torch.Tensor,
    act_scale: torch.Tensor,
    act_min: torch.Tensor,
    act_max: torch.Tensor,
    cell_scale: torch.Tensor,
    cell_min: torch.Tensor,
    cell_max: torch.Tensor,
    tanh_scale: torch.Tensor,
    tanh_min: torch.Tensor,
    tanh_max: torch.Tensor,
    out_scale: torch.Tensor,
    out_min: torch.Tensor,
    out_max: torch.Tensor,
) -> torch.Tensor:
    """The recurrence of one fully quantized LSTM layer; ``projected`` holds x_t W_ih for every step."""
    batch, steps, gates = projected.shape
    hidden = gates // 4
    h = projected.new_zeros(batch, hidden)
    c = projected.new_zeros(batch, hidden)
    outputs = []
    for t in range(steps):
        acc = projected[:, t] + torch.nn.functional.linear(h, weight_hh) + bias
        acc = torch.clamp(torch.round(acc / acc_scale), acc_min, acc_max) * acc_scale
        act = torch.cat([torch.sigmoid(acc[:, : 3 * hidden]), torch.tanh(acc[:, 3 * hidden :])], dim=1)
        act = torch.clamp(torch.round(act / act_scale), act_min, act_max) * act_scale
        i = act[:, :hidden]
        f = act[:, hidden : 2 * hidden]
        o = act[:, 2 * hidden : 3 * hidden]
        g = act[:, 3 * hidden :]
        fc = torch.clamp(torch.round((f * c) / cell_scale), cell_min, cell_max) * cell_scale
        ig = torch.clamp(torch.round((i * g) / cell_scale), cell_min, cell_max) * cell_scale
        c = torch.clamp(torch.round((fc + ig) / cell_scale), cell_min, cell_max) * cell_scale
        tanh_c = torch.clamp(torch.round(torch.tanh(c) / tanh_scale), tanh_min, tanh_max) * tanh_scale
        h = torch.clamp(torch.round((o * tanh_c) / out_scale), out_min, out_max) * out_scale
        outputs.append(h)
    return torch.stack(outputs, dim=1)


class FastQuantLSTMLayer(nn.Module):
    """One calibrated, unidirectional QuantLSTM layer as plain tensors."""

    def __init__(self, direction: nn.Module) -> None:
        super().__init__()
        if direction.reverse_input or not direction.cell.batch_first or direction.cifg:
            raise ValueError("the fast LSTM supports batch-first, forward, non-CIFG layers only")
        if not direction.quantize_output_only:
            raise ValueError("the fast LSTM expects quantize_output_only (the LSTM input has its own quantizer)")
        cell = direction.cell
        hidden = direction.hidden_size
        params = {gate: getattr(direction, f"{gate}_gate_params") for gate in _GATES}
        with torch.no_grad():
            # The quantized weights and biases exactly as the QuantLSTM layer computes them in its forward.
            dummy = torch.zeros(1, direction.input_size)
            quant = {gate: direction.gate_params_fwd(params[gate], dummy) for gate in _GATES}
            self.weight_ih = torch.cat([_unpack_quant_tensor(quant[g][0]) for g in _GATES]).detach()  # [4H, I]
            self.weight_hh = torch.cat([_unpack_quant_tensor(quant[g][1]) for g in _GATES]).detach()  # [4H, H]
            self.bias = torch.cat([_bias(quant[g][2], hidden) for g in _GATES]).detach()
            acc = _stacked([_point(getattr(cell, _ACC_POINTS[g])) for g in _GATES], hidden)
            act = _stacked([_point(getattr(cell, _ACT_POINTS[g])) for g in _GATES], hidden)
            cell_state = _point(cell.cell_state_quant)
            tanh = _point(cell.hidden_state_tanh_quant)
            output = _point(cell.output_quant)
        points = [acc, act, cell_state, tanh, output]
        if any(p.scale is None for p in points):
            raise ValueError("the fast LSTM needs every activation quantizer of the cell enabled (a calibrated model)")
        self._points = [t for p in points for t in (p.scale, p.min_int, p.max_int)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One product per gate block for all steps: column block g of x W_ih^T is F.linear(x_t, W_g).
        projected = torch.nn.functional.linear(x, self.weight_ih)
        return _steps(projected, self.weight_hh, self.bias, *self._points)


def _bias(bias: object, hidden: int) -> torch.Tensor:
    if bias is None:
        return torch.zeros(hidden)
    return _unpack_quant_tensor(bias).reshape(hidden)


class FastQuantLSTM(nn.Module):
    """The forward pass of a calibrated (Flag-aware) QuantLSTM, returning ``(outputs, None)`` like it."""

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        if any(len(layer) != 1 for layer in lstm.layers):
            raise ValueError("the fast LSTM supports unidirectional LSTMs only")
        self.layers = nn.ModuleList(FastQuantLSTMLayer(layer[0]) for layer in lstm.layers)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        for layer in self.layers:
            x = layer(x)
        return x, None


@contextmanager
def fast_lstm(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate ``model`` (a calibrated quantized classifier) with its LSTM on the fast pass.

    The model's ``lstm`` is swapped for a :class:`FastQuantLSTM` built from its current scales and
    restored on exit, so nothing of the swap reaches a checkpoint.
    """
    require_calibrated(model)
    original = model.lstm
    model.lstm = FastQuantLSTM(original)
    try:
        yield model
    finally:
        model.lstm = original
