"""A fast forward pass of a calibrated Brevitas ``QuantLSTM``: the same values, fewer operations.

Brevitas' QuantLSTM runs each of its 11 quantization points through its proxy machinery at every time
step and each gate as its own pair of matrix products. Here every quantizer is read once into plain
tensors (scale, integer bounds); the input projections of all steps are one matrix product and a step
is one recurrent product for the four gates plus a few element-wise operations. The arithmetic is
Brevitas' own, operation for operation: ``x / scale``, round half to even, clamp to the integer range,
``* scale``; the input-to-hidden and hidden-to-hidden products added before the bias; each gate's
sigmoid or tanh on its own contiguous tensor. With every quantizer switched off (GPFQ's float reference
pass) it runs Brevitas' float recurrence the same way. ``tests/test_fast_lstm.py`` checks both bit for
bit against Brevitas at every bit width; ``scripts/bench_fast_lstm.py`` measures the speed.
Calibration stays on Brevitas (it needs its observers); docs/quantization.md says what runs where.
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
_POINTS = (*_ACC_POINTS.values(), *_ACT_POINTS.values(), "cell_state_quant", "hidden_state_tanh_quant", "output_quant")


@dataclass(frozen=True)
class _Point:
    """One quantization point: its scale and integer bounds."""

    scale: torch.Tensor
    min_int: torch.Tensor
    max_int: torch.Tensor


def _point(proxy: nn.Module) -> _Point:
    """The scale and integer range Brevitas applies at ``proxy`` (a cell's activation quantizer)."""
    if not proxy.is_quant_enabled:
        raise ValueError("the fast LSTM needs every activation quantizer of the cell enabled (a calibrated model)")
    int_quant = proxy.fused_activation_quant_proxy.tensor_quant.int_quant
    bit_width = proxy.bit_width().detach()
    if float(proxy.zero_point()) != 0.0:
        raise ValueError(f"{type(proxy).__name__}: the fast LSTM supports symmetric quantizers only (zero point {float(proxy.zero_point())})")
    return _Point(proxy.scale().detach().reshape(()), int_quant.min_int(bit_width).detach(), int_quant.max_int(bit_width).detach())


def _stacked(points: list[_Point], width: int) -> _Point:
    """Per-column scale and bounds of the four gates stacked side by side (each gate ``width`` columns)."""
    return _Point(*(torch.cat([getattr(p, field).expand(width) for p in points]) for field in ("scale", "min_int", "max_int")))


@torch.jit.script
def _fake_quant(x: torch.Tensor, points: list[torch.Tensor], k: int) -> torch.Tensor:
    """Brevitas' IntQuant with a zero zero-point, ``clamp(round(x / scale)) * scale``, at point ``k``
    (scale, min, max = ``points[3k : 3k + 3]``); ``x`` itself when ``points`` is empty (quantizers off)."""
    if len(points) == 0:
        return x
    scale = points[3 * k]
    return torch.clamp(torch.round(x / scale), points[3 * k + 1], points[3 * k + 2]) * scale


@torch.jit.script
def _steps(projected: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor, points: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence of one LSTM layer as Brevitas' cell computes it; ``projected`` holds x_t W_ih for
    every step. ``points``: scale, min and max of the gate pre-activations (0), the gate activations (1),
    the cell state (2), tanh(c_t) (3) and h_t (4); empty for the float recurrence with every quantizer
    off (:class:`FlagAwareQuantLSTM`). Returns h_t and c_t of every step, ``[B, T, H]`` each."""
    batch, steps, gates = projected.shape
    hidden = gates // 4
    h = projected.new_zeros(batch, hidden)
    c = projected.new_zeros(batch, hidden)
    outputs = []
    cells = []
    for t in range(steps):
        acc = _fake_quant(projected[:, t] + torch.nn.functional.linear(h, weight_hh) + bias, points, 0)
        # Each gate's activation on its own contiguous [B, H] tensor, as in Brevitas' cell: a vectorised
        # sigmoid or tanh may round differently in a strided view or in a longer buffer's tail.
        act = torch.cat(
            [
                torch.sigmoid(acc[:, :hidden].contiguous()),
                torch.sigmoid(acc[:, hidden : 2 * hidden].contiguous()),
                torch.sigmoid(acc[:, 2 * hidden : 3 * hidden].contiguous()),
                torch.tanh(acc[:, 3 * hidden :].contiguous()),
            ],
            dim=1,
        )
        act = _fake_quant(act, points, 1)
        i = act[:, :hidden]
        f = act[:, hidden : 2 * hidden]
        o = act[:, 2 * hidden : 3 * hidden]
        g = act[:, 3 * hidden :]
        c = _fake_quant(_fake_quant(f * c, points, 2) + _fake_quant(i * g, points, 2), points, 2)
        h = _fake_quant(o * _fake_quant(torch.tanh(c), points, 3), points, 4)
        outputs.append(h)
        cells.append(c)
    return torch.stack(outputs, dim=1), torch.stack(cells, dim=1)


class FastQuantLSTMLayer(nn.Module):
    """One calibrated, unidirectional QuantLSTM layer as plain tensors: quantized, and with quantizers off."""

    def __init__(self, direction: nn.Module) -> None:
        super().__init__()
        if direction.reverse_input or not direction.cell.batch_first or direction.cifg:
            raise ValueError("the fast LSTM supports batch-first, forward, non-CIFG layers only")
        if not direction.quantize_output_only:
            raise ValueError("the fast LSTM expects quantize_output_only (the LSTM input has its own quantizer)")
        cell = direction.cell
        hidden = direction.hidden_size
        params = [getattr(direction, f"{gate}_gate_params") for gate in _GATES]
        with torch.no_grad():
            # The quantized weights and biases exactly as the QuantLSTM layer computes them in its forward.
            dummy = torch.zeros(1, direction.input_size)
            quant = [direction.gate_params_fwd(p, dummy) for p in params]
            self.weight_ih = torch.cat([_unpack_quant_tensor(q[0]) for q in quant]).detach()  # [4H, I]
            self.weight_hh = torch.cat([_unpack_quant_tensor(q[1]) for q in quant]).detach()  # [4H, H]
            self.bias = torch.cat([_bias(q[2], hidden) for q in quant]).detach()
            self.float_weight_ih = torch.cat([p.input_weight.weight for p in params]).detach()
            self.float_weight_hh = torch.cat([p.hidden_weight.weight for p in params]).detach()
            points = [
                _stacked([_point(getattr(cell, _ACC_POINTS[g])) for g in _GATES], hidden),
                _stacked([_point(getattr(cell, _ACT_POINTS[g])) for g in _GATES], hidden),
                _point(cell.cell_state_quant),
                _point(cell.hidden_state_tanh_quant),
                _point(cell.output_quant),
            ]
        self._points = [t for p in points for t in (p.scale, p.min_int, p.max_int)]

    def forward(self, x: torch.Tensor, quantized: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t and c_t of every step, ``[B, T, H]`` each, from the layer's input ``[B, T, I]``."""
        # One product for all steps: column block g of x W_ih^T is F.linear(x_t, W_g) of Brevitas' cell.
        if not quantized:
            return _steps(torch.nn.functional.linear(x, self.float_weight_ih), self.float_weight_hh, self.bias, [])
        return _steps(torch.nn.functional.linear(x, self.weight_ih), self.weight_hh, self.bias, self._points)


def _bias(bias: object, hidden: int) -> torch.Tensor:
    if bias is None:
        return torch.zeros(hidden)
    return _unpack_quant_tensor(bias).reshape(hidden)


def _quantizer_states(lstm: nn.Module) -> set[bool]:
    """Whether each quantizer of the LSTM (every cell point and gate weight) is enabled right now."""
    states = set()
    for layer in lstm.layers:
        for direction in layer:
            states.update(getattr(direction.cell, name).is_quant_enabled for name in _POINTS)
            for gate in _GATES:
                states.add(getattr(direction, f"{gate}_gate_params").input_weight.weight_quant.is_quant_enabled)
    return states


class FastQuantLSTM(nn.Module):
    """A calibrated (flag-aware) QuantLSTM's forward pass, returning ``(outputs, None)`` like it.

    It follows Brevitas' switches as the QuantLSTM does: with every quantizer on it runs the quantized
    recurrence, with every quantizer off (GPFQ's float reference pass, :func:`quantizers_disabled`) the
    float one, and in any other state it hands the input to the QuantLSTM itself, which it keeps as a
    submodule so that Brevitas' switches reach it.
    """

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        if any(len(layer) != 1 for layer in lstm.layers):
            raise ValueError("the fast LSTM supports unidirectional LSTMs only")
        self.layers = nn.ModuleList(FastQuantLSTMLayer(layer[0]) for layer in lstm.layers)
        self.brevitas = lstm

    def _quantized(self) -> bool | None:
        """True with every quantizer of the LSTM on, False with every one off, None in between."""
        states = _quantizer_states(self.brevitas)
        return states.pop() if len(states) == 1 else None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        if self._quantized() is None:  # some quantizers on, some off: Brevitas' own pass
            return self.brevitas(x)[0], None
        return self.trace(x)[0], None

    @torch.no_grad()
    def trace(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t and c_t of the last layer at every step, ``[B, T, H]`` each (see :func:`analysis.lstm_state_trace`)."""
        quantized = self._quantized()
        if quantized is None:
            raise ValueError("the fast LSTM traces a QuantLSTM with its quantizers all on or all off")
        for layer in self.layers:
            x, cells = layer(x, quantized)
        return x, cells


@contextmanager
def using_fast_lstm(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate ``model`` (a calibrated quantized classifier) with its LSTM on the fast pass.

    The model's ``lstm`` is swapped for a :class:`FastQuantLSTM` built from its current scales and
    restored on exit, so nothing of the swap reaches a checkpoint. Inside another such block (GPFQ
    within a cell's refinement) the model keeps the fast LSTM it already has.
    """
    require_calibrated(model)
    if isinstance(model.lstm, FastQuantLSTM):
        yield model
        return
    original = model.lstm
    model.lstm = FastQuantLSTM(original)
    try:
        yield model
    finally:
        model.lstm = original
