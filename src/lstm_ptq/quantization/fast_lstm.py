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
Calibration keeps Brevitas' observers, fed from one float pass here (:class:`ObservingFastLSTM`);
docs/quantization.md says what runs where.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from brevitas import config as brevitas_config
from brevitas.core.function_wrapper.shape import OverTensorView
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from brevitas.core.stats.stats_op import AbsPercentile
from brevitas.core.utils import inplace_momentum_update, inplace_tensor_mul
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
def _fake_quant_(x: torch.Tensor, scale: torch.Tensor, min_int: torch.Tensor, max_int: torch.Tensor) -> torch.Tensor:
    """Brevitas' IntQuant with a zero zero-point, ``clamp(round(x / scale)) * scale``, in place on ``x`` (a
    tensor of this step's own): the same element-wise operations, without a new tensor per operation."""
    return x.div_(scale).round_().clamp_(min_int, max_int).mul_(scale)


@torch.jit.script
def _fake_quant_scalar_(x: torch.Tensor, scale: torch.Tensor, min_int: float, max_int: float) -> torch.Tensor:
    """:func:`_fake_quant_` at a per-tensor point whose integer bounds are Python numbers: the clamp takes
    its scalar kernel, much cheaper on a [B, H] tensor than bounds broadcast from 0-d tensors."""
    return x.div_(scale).round_().clamp_(min_int, max_int).mul_(scale)


@torch.jit.script
def _gate_activations(acc: torch.Tensor, hidden: int) -> torch.Tensor:
    """sigmoid(i, f, o) and tanh(g) of the gate pre-activations ``[B, 4H]``, each on its own contiguous
    [B, H] tensor as in Brevitas' cell: a vectorised sigmoid or tanh may round differently in a strided
    view or in a longer buffer's tail."""
    return torch.cat(
        [
            torch.sigmoid(acc[:, :hidden].contiguous()),
            torch.sigmoid(acc[:, hidden : 2 * hidden].contiguous()),
            torch.sigmoid(acc[:, 2 * hidden : 3 * hidden].contiguous()),
            torch.tanh(acc[:, 3 * hidden :].contiguous()),
        ],
        dim=1,
    )


@torch.jit.script
def _steps(
    projected: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor, gates: list[torch.Tensor], scales: list[torch.Tensor], bounds: list[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The recurrence of one LSTM layer as Brevitas' cell computes it; ``projected`` holds x_t W_ih for
    every step. ``gates``: per-column scale, min and max of the gate pre-activations, then of the gate
    activations; ``scales`` and ``bounds``: scale, and min and max, of the cell state, tanh(c_t) and h_t.
    All three empty: the float recurrence with every quantizer off (:class:`FlagAwareQuantLSTM`).
    Returns h_t and c_t of every step, ``[B, T, H]`` each."""
    batch, steps, width = projected.shape
    hidden = width // 4
    quantized = len(scales) > 0
    h = projected.new_zeros(batch, hidden)
    c = projected.new_zeros(batch, hidden)
    outputs = []
    cells = []
    for t in range(steps):
        acc = (projected[:, t] + torch.nn.functional.linear(h, weight_hh)).add_(bias)
        if quantized:
            _fake_quant_(acc, gates[0], gates[1], gates[2])
        act = _gate_activations(acc, hidden)
        if quantized:
            _fake_quant_(act, gates[3], gates[4], gates[5])
        i = act[:, :hidden]
        f = act[:, hidden : 2 * hidden]
        o = act[:, 2 * hidden : 3 * hidden]
        g = act[:, 3 * hidden :]
        forget = f * c
        update = i * g
        if quantized:
            _fake_quant_scalar_(forget, scales[0], bounds[0], bounds[1])
            _fake_quant_scalar_(update, scales[0], bounds[0], bounds[1])
        c = forget.add_(update)
        if quantized:
            _fake_quant_scalar_(c, scales[0], bounds[0], bounds[1])
        tanh_c = torch.tanh(c)
        if quantized:
            _fake_quant_scalar_(tanh_c, scales[1], bounds[2], bounds[3])
        h = o * tanh_c
        if quantized:
            _fake_quant_scalar_(h, scales[2], bounds[4], bounds[5])
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
            gates = [_stacked([_point(getattr(cell, names[g])) for g in _GATES], hidden) for names in (_ACC_POINTS, _ACT_POINTS)]
            states = [_point(getattr(cell, name)) for name in ("cell_state_quant", "hidden_state_tanh_quant", "output_quant")]
        self._gates = [t for p in gates for t in (p.scale, p.min_int, p.max_int)]
        self._scales = [p.scale for p in states]
        self._bounds = [float(bound) for p in states for bound in (p.min_int, p.max_int)]

    def forward(self, x: torch.Tensor, quantized: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t and c_t of every step, ``[B, T, H]`` each, from the layer's input ``[B, T, I]``."""
        # One product for all steps: column block g of x W_ih^T is F.linear(x_t, W_g) of Brevitas' cell.
        if not quantized:
            return _steps(torch.nn.functional.linear(x, self.float_weight_ih), self.float_weight_hh, self.bias, [], [], [])
        return _steps(torch.nn.functional.linear(x, self.weight_ih), self.weight_hh, self.bias, self._gates, self._scales, self._bounds)


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


# Calibration's observers, fed from one pass --------------------------------------------------------------
#
# Under Brevitas' calibration_mode every activation quantizer of the cell is an observer: at each time
# step its scaling module takes the 99.99th percentile of |a| over the step's [B, H] tensor and folds it
# into a running mean (counter, buffer). Brevitas runs each of these calls through its proxy machinery,
# 13 per step. Here the float recurrence runs once as plain tensors, keeping every observed tensor; the
# per-step percentiles of each point are one batched selection (_kth_smallest: a top-k for a high
# percentile, kthvalue along rows otherwise; an order statistic, the same element the per-step call
# selects), and the running mean is Brevitas' own update, call by call, in Brevitas' order.
# tests/test_fast_lstm.py checks that the resulting ranges equal Brevitas' bit for bit.

# The observed tensors of one step, in the order _observed_float_steps returns them, and the points
# (with the gate slice) that observe each; cell_state_quant observes f*c, i*g and c_t, in that order.
_OBSERVED = ("acc", "act", "forget_cell", "input_cell", "cell", "tanh_cell", "hidden")
_OBSERVERS = (
    *(("acc", g, _ACC_POINTS[g]) for g in _GATES),
    *(("act", g, _ACT_POINTS[g]) for g in _GATES),
    ("cell_state", None, "cell_state_quant"),
    ("tanh_cell", None, "hidden_state_tanh_quant"),
    ("hidden", None, "output_quant"),
)


@torch.jit.script
def _observed_float_steps(projected: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor) -> list[torch.Tensor]:
    """The float recurrence of :func:`_steps` (every quantizer off), keeping what each observer sees:
    gate pre-activations and activations ``[T, B, 4H]``, then f*c, i*g, c_t, tanh(c_t), h_t ``[T, B, H]``."""
    batch, steps, gates = projected.shape
    hidden = gates // 4
    h = projected.new_zeros(batch, hidden)
    c = projected.new_zeros(batch, hidden)
    seen: list[list[torch.Tensor]] = [[], [], [], [], [], [], []]
    for t in range(steps):
        acc = projected[:, t] + torch.nn.functional.linear(h, weight_hh) + bias
        act = _gate_activations(acc, hidden)
        forget_cell = act[:, hidden : 2 * hidden] * c
        input_cell = act[:, :hidden] * act[:, 3 * hidden :]
        c = forget_cell + input_cell
        tanh_cell = torch.tanh(c)
        h = act[:, 2 * hidden : 3 * hidden] * tanh_cell
        for i, x in enumerate([acc, act, forget_cell, input_cell, c, tanh_cell, h]):
            seen[i].append(x)
    return [torch.stack(x) for x in seen]


def _scaling(proxy: nn.Module) -> ParameterFromRuntimeStatsScaling:
    """The one runtime-statistics scaling module of an activation quantizer the observer can feed."""
    found = [m for m in proxy.modules() if isinstance(m, ParameterFromRuntimeStatsScaling)]
    if len(found) != 1:
        raise ValueError(f"expected one runtime-statistics scaling in {type(proxy).__name__}, found {len(found)}")
    scaling = found[0]
    if not _is_per_tensor_abs_percentile(scaling):
        raise ValueError(f"the fast observer supports per-tensor AbsPercentile statistics only, not {type(scaling.stats.stats_impl).__name__}")
    return scaling


def _is_per_tensor_abs_percentile(scaling: ParameterFromRuntimeStatsScaling) -> bool:
    impl = scaling.stats.stats_impl
    return (
        isinstance(impl, AbsPercentile) and getattr(impl, "stats_reduce_dim", None) is None and isinstance(scaling.stats_input_view_shape_impl, OverTensorView)
    )


_TOPK_LIMIT = 64
_CHUNKS = 16


def _kth_smallest(rows: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest value (1-indexed) of each row of ``rows`` ``[R, N]``, as ``torch.kthvalue``
    selects it. For a high percentile the (N - k + 1)-th largest is cheaper to find: a short top-k, over
    long rows first within each of a few chunks (the row's top values are among its chunks' top values)."""
    width = rows.shape[1]
    largest = width - k + 1
    if largest > _TOPK_LIMIT and largest * 256 > width:  # not a high percentile: a row-wise selection
        return torch.kthvalue(rows, k, dim=1).values
    if width >= 64 * _CHUNKS * largest:
        step = width // _CHUNKS
        head = rows[:, : step * _CHUNKS].reshape(rows.shape[0] * _CHUNKS, step)
        candidates = torch.topk(head, largest, dim=1).values.reshape(rows.shape[0], -1)
        rows = torch.cat([candidates, rows[:, step * _CHUNKS :]], dim=1)
    return torch.topk(rows, largest, dim=1).values[:, -1]


def _abs_percentile(observed: torch.Tensor, q: float) -> torch.Tensor:
    """Brevitas' AbsPercentile (per tensor) of each of ``observed``'s ``[T, ...]`` slices: one value per
    slice, the k-th smallest |a| with AbsPercentile.forward's k."""
    rows = observed.reshape(observed.shape[0], -1).abs()
    return _kth_smallest(rows, int(math.floor(0.01 * q * rows.shape[1] + 0.5)))


class _FastAbsPercentile(nn.Module):
    """Drop-in for a per-tensor AbsPercentile during calibration: the same value, selected faster."""

    def __init__(self, q: float) -> None:
        super().__init__()
        self.q = q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _abs_percentile(x.reshape(1, -1), self.q)[0]


def _feed(scaling: ParameterFromRuntimeStatsScaling, stats: torch.Tensor) -> None:
    """ParameterFromRuntimeStatsScaling.training_forward for each of ``stats`` (one per call, in order)."""
    if not scaling.training or scaling.local_loss_mode:
        raise RuntimeError("the fast observer runs inside Brevitas' calibration_mode only")
    clamped = scaling.clamp_scaling(stats + 0.0 * scaling.value).detach()
    for value in clamped:
        counter = scaling.counter
        if counter >= scaling.collect_stats_steps:
            raise RuntimeError("an activation quantizer collected more calls than its collect_stats_steps")
        if counter == 0:
            inplace_tensor_mul(scaling.buffer, value)
        else:
            inplace_momentum_update(scaling.buffer, value, scaling.momentum, counter, counter + 1)
        scaling.counter = counter + 1


class _ObservingLayer:
    """One QuantLSTM layer under calibration_mode: its float weights and the scaling module of each point."""

    def __init__(self, direction: nn.Module) -> None:
        if direction.reverse_input or not direction.cell.batch_first or direction.cifg or not direction.quantize_output_only:
            raise ValueError("the fast observer supports batch-first, forward, non-CIFG layers with quantize_output_only")
        hidden = direction.hidden_size
        dummy = torch.zeros(1, direction.input_size)
        # The weights and biases as the layer's own forward computes them (weight quantizers are off).
        quant = [direction.gate_params_fwd(getattr(direction, f"{gate}_gate_params"), dummy) for gate in _GATES]
        self.weight_ih = torch.cat([_unpack_quant_tensor(q[0]) for q in quant]).detach()
        self.weight_hh = torch.cat([_unpack_quant_tensor(q[1]) for q in quant]).detach()
        self.bias = torch.cat([_bias(q[2], hidden) for q in quant]).detach()
        self.hidden = hidden
        self.scalings = {point: _scaling(getattr(direction.cell, point)) for _, _, point in _OBSERVERS}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        seen = dict(zip(_OBSERVED, _observed_float_steps(torch.nn.functional.linear(x, self.weight_ih), self.weight_hh, self.bias), strict=True))
        gate = {g: slice(i * self.hidden, (i + 1) * self.hidden) for i, g in enumerate(_GATES)}
        for kind, g, point in _OBSERVERS:
            q = self.scalings[point].stats.stats_impl.q
            if kind == "cell_state":  # three calls per step: f*c, i*g, c_t
                stats = torch.stack([_abs_percentile(seen[name], q) for name in ("forget_cell", "input_cell", "cell")], dim=1).reshape(-1)
            elif g is not None:
                stats = _abs_percentile(seen[kind][:, :, gate[g]], q)
            else:
                stats = _abs_percentile(seen[kind], q)
            _feed(self.scalings[point], stats)
        return seen["hidden"].transpose(0, 1)


class ObservingFastLSTM(nn.Module):
    """A QuantLSTM under calibration_mode: the float pass and every cell observer's statistics, without
    Brevitas' per-step calls. Returns ``(outputs, None)`` like the QuantLSTM; see :func:`observing_lstm`."""

    def __init__(self, lstm: nn.Module) -> None:
        super().__init__()
        if any(len(layer) != 1 for layer in lstm.layers):
            raise ValueError("the fast observer supports unidirectional LSTMs only")
        self._layers = [_ObservingLayer(layer[0]) for layer in lstm.layers]
        self.brevitas = lstm

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        for layer in self._layers:
            x = layer(x)
        return x, None


@contextmanager
def observing_lstm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside Brevitas' calibration_mode: ``model``'s LSTM swapped for an :class:`ObservingFastLSTM` and
    every per-tensor percentile's selection for :class:`_FastAbsPercentile`, restored on exit (before
    calibration_mode's own exit turns the statistics into scales). A model the fast observer does not
    cover (:func:`fast_observable`), or Brevitas under TorchScript, is left as it is."""
    observing = None if brevitas_config.JIT_ENABLED else _observing_or_none(model.lstm)
    if observing is None:
        yield model  # Brevitas' own observers: TorchScript modules cannot be swapped, other layouts are not covered
        return
    original = model.lstm
    swapped = []
    for scaling in model.modules():
        if isinstance(scaling, ParameterFromRuntimeStatsScaling) and _is_per_tensor_abs_percentile(scaling):
            swapped.append((scaling.stats, scaling.stats.stats_impl))
            scaling.stats.stats_impl = _FastAbsPercentile(scaling.stats.stats_impl.q)
    model.lstm = observing
    try:
        yield model
    finally:
        model.lstm = original
        for stats, impl in swapped:
            stats.stats_impl = impl


def fast_observable(lstm: nn.Module) -> bool:
    """Whether :class:`ObservingFastLSTM` covers ``lstm``: unidirectional, batch-first, forward, non-CIFG
    layers whose input has its own quantizer (quantize_output_only), every cell point a per-tensor
    AbsPercentile observer. The project's models are; anything else keeps Brevitas' observers."""
    return _observing_or_none(lstm) is not None


def _observing_or_none(lstm: nn.Module) -> ObservingFastLSTM | None:
    try:
        return ObservingFastLSTM(lstm)
    except ValueError:
        return None
