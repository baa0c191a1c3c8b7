"""Post-training quantization of the two LSTM classifiers with Brevitas (paper sections 4.2 and 4.3.2).

The PTQ flow of Figure 1 in three calls::

    qmodel = quantize(float_model, QuantSpec(bit_width=4))  # 4.2.1: weights quantized, act quantizers inserted
    calibrate(qmodel, batches)                               # 4.2.2: activation scales from unlabeled data
    apply_gpfq(qmodel, batches, "gpfq")                      # 4.2.3: GPFQ on the final linear layer only

``batches`` are ``(tokens, lengths)`` pairs: no labels reach calibration or GPFQ (section 4.3.2).

Quantized layers: embedding (and the generative label embedding), a quantizer on the LSTM input,
QuantLSTM with all 11 activation points per layer, the final QuantLinear with an input quantizer.
Symmetric, per-tensor scales at the stage's bit width; biases stay float32.

Decisions on the Brevitas pitfalls (see /work/shared/BREVITAS_NOTES.md; tests/test_quantize.py):

- Shared LSTM input/output quantizer: QuantLSTM's ``io_quant`` quantizes both x_t and h_t with ONE
  scale, which clips embeddings to the range of h (57% output error at 8 bits on a test model, 2.4%
  without). Every LSTM layer gets ``quantize_output_only=True`` and the LSTM input its own quantizer.
- GPFQ reference pass: equation 22 compares X w (full-precision activations) with X~ q. Brevitas'
  reference pass disables quantizers by flag, but QuantLSTM's fast cell ignores the flag (and its
  reference cell cannot run disabled quantizers), so the "float" pass still quantized the LSTM.
  :class:`FlagAwareQuantLSTM` reduces disabled points to their activation function, so the
  reference pass, and :func:`quantizers_disabled`, are TRUE float: GPFQ sees the float model's X.
- Inflated weight scale: GPFQ writes unrounded weights into the layer; a scale recomputed from them
  grows and rounds most weights to zero. Every weight scale is a parameter set ONCE from the float
  weights (``PARAMETER_FROM_STATS``, forced by :func:`quantize`: "weights are quantized statically
  during the initial quantization step", 4.2); GPFQ cannot move it and checkpoints carry it.
- ``weight_orig``: GPFQ registers the original float weight as a buffer, so a strict load into a fresh
  model fails. Saved checkpoints drop it (the float checkpoint has it); loading accepts either form.
- 4-D input to GPFQ: the generative decoder is fed ``(1, C * N_real, H + d_l)``, the decoder input
  ``[h_t ; l_y]`` for every REAL position and every candidate label, as at inference; calibration of
  the decoder's input quantizer sees the same rows.
- Activation grid: signed activation quantizers are narrow-range (``act_narrow_range``, default on),
  levels -(2^(b-1)-1) .. 2^(b-1)-1 as the paper's "[-127, 127] for signed 8-bit" (4.2.1); at 3 bits
  tanh reaches +-1.0 instead of -1.0 / +0.75. Measured (AG News, 600 calibration documents, 1,500
  test documents): wide minus narrow accuracy -2.2 .. +1.6 points, no systematic winner. Sigmoid
  outputs use an unsigned quantizer.
- Cell-state scale: QuantLSTM's ONE cell-state quantizer serves f*c, i*g and c_t, its scale the
  average of their per-step percentiles. Kept as the paper's Brevitas QuantLSTM has it, at the stage
  bit width (``cell_state_bit_width`` overrides it for ablations). When |c| is large the low-bit step
  exceeds |i*g| <= 1, c_t stays 0 and h_t is exactly 0: a discriminative model with |c| p99.99 = 23
  gave 100% zero h_t and chance accuracy at 3 bits, 71-80% zero h_t at 4 bits. :func:`hidden_state_stats`
  records the zero-h fraction and |c| percentiles so every cell's result can be read against them.
- LSTM weights: one scale per gate, shared by its input-to-hidden and hidden-to-hidden matrices
  (Brevitas' QuantLSTM default). Biases stay float (``bias_quant=None``).
- ``BREVITAS_JIT=1`` gives bit-identical scores, quantized passes ~1.6-1.9x faster, plus ~3 s of
  TorchScript compilation per model (scripts/bench_quant_cell.py).
"""

from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

# TorchScript for Brevitas' quantizers: bit-identical scores, quantized passes ~1.6-1.9x faster
# (scripts/bench_quant_cell.py --jit-compare). Read when Brevitas is imported; BREVITAS_JIT=0 opts out.
os.environ.setdefault("BREVITAS_JIT", "1")

import brevitas.nn as qnn  # noqa: E402
from brevitas.core.scaling import ScalingImplType
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling, ParameterFromStatsFromParameterScaling
from brevitas.core.stats import StatsOp
from brevitas.graph.calibrate import calibration_mode, quantization_status_manager
from brevitas.graph.gpfq import GPFQ, gpfq_mode
from brevitas.graph.gptq import gptq_mode
from brevitas.graph.qronos import Qronos
from brevitas.nn.quant_rnn import _QuantLSTMCell
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjectorBase
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from brevitas.quant_tensor import _unpack_quant_tensor

from .artifacts import atomic_write_bytes
from .config import get_typed, section
from .errors import DataError, ParamError
from .evaluation import Scorer, batch_tensors
from .models import (
    DecoderParts,
    DiscriminativeLSTM,
    GenerativeLSTM,
    ModelConfig,
    classify_generative,
    document_label_losses,
    generative_io,
    generative_label_losses_naive,
    last_real_index,
)
from .preprocess import EncodedSplit
from .text import PAD_ID

MIN_BIT_WIDTH, MAX_BIT_WIDTH = 2, 16
CHECKPOINT_FORMAT = "lstm_ptq.quantized/1"

# Symmetric per-tensor weight statistic (section 4.2.1): "minmax" is max|W| (equation 17 for a
# symmetric range), "percentile" the weight_high_percentile-th percentile of |W|.
WEIGHT_SCALINGS: dict[str, StatsOp] = {"minmax": StatsOp.MAX, "percentile": StatsOp.PERCENTILE}


# --------------------------------------------------------------------------------------------------
# The quantization spec
# --------------------------------------------------------------------------------------------------


def _check_bit_width(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParamError(f"{where}: {value!r} is not an integer bit width")
    if not MIN_BIT_WIDTH <= int(value) <= MAX_BIT_WIDTH:
        raise ParamError(f"{where}: {value!r} is outside {MIN_BIT_WIDTH}..{MAX_BIT_WIDTH}")
    return int(value)


def _check_percentile(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"{where}: {value!r} is not a number")
    if not 50.0 < float(value) <= 100.0:
        raise ParamError(f"{where}: {value!r} is not a high percentile in (50, 100]")
    return float(value)


@dataclass(frozen=True)
class QuantSpec:
    """How one cell is quantized: the stage's bit width for weights AND activations (section 4.3.2)."""

    bit_width: int
    act_high_percentile: float = 99.99  # activation range: percentile of |a| (section 4.3.2)
    weight_scaling: str = "minmax"  # "minmax" | "percentile" (section 4.2.1)
    weight_high_percentile: float = 99.99  # used when weight_scaling == "percentile"
    act_narrow_range: bool = True  # signed activations on -(2^(b-1)-1) .. 2^(b-1)-1
    cell_state_bit_width: int | None = None  # None: the stage bit width

    def __post_init__(self) -> None:
        where = "quantization"
        object.__setattr__(self, "bit_width", _check_bit_width(self.bit_width, f"{where}.bit_width"))
        object.__setattr__(self, "act_high_percentile", _check_percentile(self.act_high_percentile, f"{where}.act_high_percentile"))
        object.__setattr__(self, "weight_high_percentile", _check_percentile(self.weight_high_percentile, f"{where}.weight_high_percentile"))
        if self.weight_scaling not in WEIGHT_SCALINGS:
            raise ParamError(f"{where}.weight_scaling: unknown scaling {self.weight_scaling!r}; expected one of {list(WEIGHT_SCALINGS)}")
        if not isinstance(self.act_narrow_range, bool):
            raise ParamError(f"{where}.act_narrow_range: {self.act_narrow_range!r} is not a bool")
        if self.cell_state_bit_width is not None:
            object.__setattr__(self, "cell_state_bit_width", _check_bit_width(self.cell_state_bit_width, f"{where}.cell_state_bit_width"))

    @property
    def cell_state_bits(self) -> int:
        return self.bit_width if self.cell_state_bit_width is None else self.cell_state_bit_width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], bit_width: Any) -> "QuantSpec":
        """Read the ``quantization`` section; ``bit_width`` is the stage's matrix item."""
        where = "quantization"
        node = section(params, where)
        optional: dict[str, Any] = {}
        for name, kind in (("act_high_percentile", float), ("weight_scaling", str), ("weight_high_percentile", float), ("act_narrow_range", bool)):
            if name in node:
                optional[name] = get_typed(node, name, kind, where)
        if node.get("cell_state_bit_width") is not None:
            optional["cell_state_bit_width"] = node["cell_state_bit_width"]
        return cls(bit_width=bit_width, **optional)


# --------------------------------------------------------------------------------------------------
# Quantized models
# --------------------------------------------------------------------------------------------------


def _weight_quant(spec: QuantSpec):
    # PARAMETER_FROM_STATS: the scale is computed once from the float weights, then frozen.
    return Int8WeightPerTensorFloat.let(
        bit_width=spec.bit_width,
        scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS,
        scaling_stats_op=WEIGHT_SCALINGS[spec.weight_scaling],
        high_percentile_q=spec.weight_high_percentile,
    )


def _act_quant(spec: QuantSpec, bit_width: int | None = None):
    return Int8ActPerTensorFloat.let(
        bit_width=spec.bit_width if bit_width is None else bit_width,
        high_percentile_q=spec.act_high_percentile,
        narrow_range=spec.act_narrow_range,
    )


def _unsigned_act_quant(spec: QuantSpec):
    return Uint8ActPerTensorFloat.let(bit_width=spec.bit_width, high_percentile_q=spec.act_high_percentile)


class _ActOnly(nn.Module):
    """A disabled quantization point inside QuantLSTM's cell: its activation function (or identity) only."""

    def __init__(self, activation: nn.Module | None) -> None:
        super().__init__()
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor):
        return (self.activation(x), None, None, None)


_LSTM_CELL_POINTS = (
    "output_quant", "cell_state_quant", "input_acc_quant", "forget_acc_quant", "cell_acc_quant", "output_acc_quant",
    "input_sigmoid_quant", "forget_sigmoid_quant", "cell_tanh_quant", "output_sigmoid_quant", "hidden_state_tanh_quant",
)


def _flag_aware_cell(layer: nn.Module) -> _QuantLSTMCell:
    """QuantLSTM's fast cell with each DISABLED quantization point reduced to its activation function."""
    cell = layer.cell

    def point(name: str) -> nn.Module:
        proxy = getattr(cell, name)
        fused = proxy.fused_activation_quant_proxy
        if fused is None:
            return _ActOnly(None)
        return fused if proxy.is_quant_enabled else _ActOnly(fused.activation_impl)

    return _QuantLSTMCell(
        **{name: point(name) for name in _LSTM_CELL_POINTS},
        reverse_input=cell.reverse_input,
        batch_first=cell.batch_first,
        cifg=cell.cifg,
        output_quant_enabled=cell.output_quant.is_quant_enabled,
        cell_state_quant_enabled=cell.cell_state_quant.is_quant_enabled,
        fast_impl=True,
    )


class FlagAwareQuantLSTM(qnn.QuantLSTM):
    """QuantLSTM whose disabled activation quantizers really are disabled.

    QuantLSTM's fast cell calls the fused quantizers directly and ignores ``disable_quant``, which is
    how Brevitas disables quantization (GPFQ's reference pass, :func:`quantizers_disabled`); its
    reference cell cannot run disabled quantizers either (it indexes their plain-tensor output). While
    any activation quantizer of a layer is disabled, the layer runs a fast cell in which the disabled
    points apply only their activation function. With every quantizer enabled nothing changes.
    """

    def forward(self, inp, hx=None, cx=None):
        swapped = []
        for layer in self.layers:
            for direction in layer:
                proxies = [getattr(direction.cell, name) for name in _LSTM_CELL_POINTS]
                if any(p.disable_quant for p in proxies if isinstance(p, ActQuantProxyFromInjectorBase)):
                    swapped.append((direction, direction._fast_cell, direction.fast_mode))
                    direction._fast_cell = _flag_aware_cell(direction)
                    direction.fast_mode = True
        try:
            return super().forward(inp, hx, cx)
        finally:
            for direction, fast_cell, fast_mode in swapped:
                direction._fast_cell = fast_cell
                direction.fast_mode = fast_mode


def _quant_lstm(config: ModelConfig, spec: QuantSpec) -> FlagAwareQuantLSTM:
    act = _act_quant(spec)
    lstm = FlagAwareQuantLSTM(
        config.embedding_dim,
        config.hidden_size,
        config.num_layers,
        batch_first=True,
        weight_quant=_weight_quant(spec),
        bias_quant=None,
        io_quant=act,
        gate_acc_quant=act,
        sigmoid_quant=_unsigned_act_quant(spec),
        tanh_quant=act,
        cell_state_quant=_act_quant(spec, spec.cell_state_bits),
    )
    for layer in lstm.layers:  # pitfall: io_quant would also quantize x_t with the scale of h_t
        for direction in layer:
            direction.quantize_output_only = True
    return lstm


def _trim(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns: a unidirectional LSTM's real positions cannot see them."""
    last_real_index(lengths)
    return tokens[:, : int(lengths.max())]


class QuantDiscriminativeLSTM(nn.Module):
    """Brevitas counterpart of :class:`models.DiscriminativeLSTM` (same parameter names)."""

    model_type = "discriminative"

    def __init__(self, config: ModelConfig, spec: QuantSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.final_layer_algorithm = "none"
        self.embedding = qnn.QuantEmbedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID, weight_quant=_weight_quant(spec))
        self.lstm_input_quant = qnn.QuantIdentity(act_quant=_act_quant(spec))
        self.lstm = _quant_lstm(config, spec)
        self.classifier = qnn.QuantLinear(
            config.hidden_size, config.num_classes, bias=True, weight_quant=_weight_quant(spec), bias_quant=None, input_quant=_act_quant(spec)
        )

    @property
    def final_layer(self) -> qnn.QuantLinear:
        return self.classifier

    def lstm_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.lstm_input_quant(self.embedding(inputs))

    def final_hidden(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.lstm_inputs(_trim(tokens, lengths)))
        return outputs[torch.arange(outputs.shape[0]), last_real_index(lengths)]

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C] (equations 1-4)."""
        return self.classifier(self.final_hidden(tokens, lengths))


class QuantGenerativeLSTM(nn.Module):
    """Brevitas counterpart of :class:`models.GenerativeLSTM` (same parameter names)."""

    model_type = "generative"

    def __init__(self, config: ModelConfig, spec: QuantSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.final_layer_algorithm = "none"
        self.embedding = qnn.QuantEmbedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID, weight_quant=_weight_quant(spec))
        self.lstm_input_quant = qnn.QuantIdentity(act_quant=_act_quant(spec))
        self.lstm = _quant_lstm(config, spec)
        self.label_embedding = qnn.QuantEmbedding(config.num_classes, config.label_embedding_dim, weight_quant=_weight_quant(spec))
        self.decoder = qnn.QuantLinear(
            config.hidden_size + config.label_embedding_dim,
            config.vocab_size,
            bias=True,
            weight_quant=_weight_quant(spec),
            bias_quant=None,
            input_quant=_act_quant(spec),
        )

    @property
    def final_layer(self) -> qnn.QuantLinear:
        return self.decoder

    def lstm_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.lstm_input_quant(self.embedding(inputs))

    def hidden_states(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.lstm_inputs(inputs))
        return outputs

    def label_vectors(self) -> torch.Tensor:
        """l_y for every label, [C, d_l] (equation 9), through the label embedding's quantizer."""
        return self.label_embedding(torch.arange(self.config.num_classes))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed next-token cross-entropy per document given its label (equation 13), shape [B]."""
        inputs, targets, mask = generative_io(_trim(tokens, lengths), lengths)
        hidden = self.hidden_states(inputs)
        labels_e = self.label_embedding(labels.long()).unsqueeze(1).expand(-1, hidden.shape[1], -1)
        logits = self.decoder(torch.cat([hidden, labels_e], dim=-1))
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), targets.long(), reduction="none")
        return (nll * mask).sum(dim=1)


QuantModel = QuantDiscriminativeLSTM | QuantGenerativeLSTM
QUANT_MODELS: dict[str, type[nn.Module]] = {"discriminative": QuantDiscriminativeLSTM, "generative": QuantGenerativeLSTM}
FLOAT_MODELS: dict[str, type[nn.Module]] = {"discriminative": DiscriminativeLSTM, "generative": GenerativeLSTM}


def build_quant_model(config: ModelConfig, spec: QuantSpec) -> QuantModel:
    """An empty quantized model (random weights, no scales): the skeleton a checkpoint loads into."""
    return QUANT_MODELS[config.model_type](config, spec).eval()


def _is_quantizer_key(name: str) -> bool:
    return any("quant" in part for part in name.split("."))


def init_weight_scales(model: nn.Module) -> None:
    """Quantize every weight once so each weight scale is computed from the current (float) weights."""
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "quant_weight") and getattr(module, "weight_quant", None) is not None and module.weight_quant.is_quant_enabled:
                module.quant_weight()
    for module in model.modules():
        if isinstance(module, ParameterFromStatsFromParameterScaling) and not module.init_done:
            raise RuntimeError("a weight scale was not initialised; is every quantized weight reachable?")


def quantize(float_model: nn.Module, spec: QuantSpec) -> QuantModel:
    """Section 4.2.1: copy the float weights into the Brevitas model and fix the weight scales.

    Activation scales stay uninitialised until :func:`calibrate`. Every real parameter must be matched
    by a float tensor (QuantLSTM splits ``weight_ih``/``weight_hh`` per gate and sums the biases).
    """
    config: ModelConfig = float_model.config
    if not isinstance(float_model, FLOAT_MODELS[config.model_type]):
        raise DataError(f"expected a float {config.model_type} model, got {type(float_model).__name__}")
    qmodel = QUANT_MODELS[config.model_type](config, spec)
    result = qmodel.load_state_dict(float_model.state_dict(), strict=False)
    unmatched = sorted(k for k in result.missing_keys if not _is_quantizer_key(k))
    if result.unexpected_keys or unmatched:
        raise DataError(
            f"float {config.model_type} weights do not map onto the quantized model: "
            f"unmatched parameters {unmatched}, unexpected tensors {sorted(result.unexpected_keys)}"
        )
    qmodel.eval()
    init_weight_scales(qmodel)
    return qmodel


@contextmanager
def quantizers_disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Every weight and activation quantizer off: the Brevitas model computes the float model."""
    with quantization_status_manager(model, disable_act_quant=True, disable_weight_quant=True, disable_bias_quant=True, is_training=False):
        yield model


# --------------------------------------------------------------------------------------------------
# Calibration (section 4.2.2)
# --------------------------------------------------------------------------------------------------

Batch = tuple[torch.Tensor, torch.Tensor]  # (tokens [B, L], lengths [B]); labels never travel


def token_batches(split: EncodedSplit, batch_size: int, rows: Sequence[int] | np.ndarray | None = None) -> list[Batch]:
    """``(tokens, lengths)`` batches of ``split`` (or of its ``rows``) in length order, each trimmed to its
    longest document, so the LSTM's observers see as little padding as possible."""
    if batch_size < 1:
        raise ParamError(f"batch_size: {batch_size!r} must be >= 1")
    index = np.arange(len(split)) if rows is None else np.asarray(rows, dtype=np.int64)
    index = index[np.argsort(split.lengths[index], kind="stable")]
    return [batch_tensors(split, index[start : start + batch_size]) for start in range(0, len(index), batch_size)]


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


class _FinalLayerDriver(nn.Module):
    """Runs a quantized model up to its final linear layer on label-free ``(tokens, lengths)``.

    Discriminative: the model itself. Generative: the decoder input ``[h_t ; l_y]`` for every real
    position and EVERY candidate label, as inference scores them, as one 3-D tensor
    ``(1, C * N_real, H + d_l)`` (Brevitas' GPxQ reshapes only up to 3-D inputs). With
    ``observe_only`` the decoder's input quantizer sees it but the [., V] product is skipped.
    """

    def __init__(self, model: QuantModel, observe_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.observe_only = observe_only

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, QuantDiscriminativeLSTM):
            return self.model(tokens, lengths)
        rows = generative_decoder_rows(self.model, tokens, lengths).unsqueeze(0)
        if self.observe_only:
            return self.model.decoder.input_quant(rows)
        return self.model.decoder(rows)


def generative_decoder_rows(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[h_t ; l_y]`` for every real position (rows) and every label (blocks): ``[C * N_real, H + d_l]``."""
    inputs, _, mask = generative_io(_trim(tokens, lengths), lengths)
    hidden = model.hidden_states(inputs)[mask]  # [N, H]
    labels = model.label_vectors() if hasattr(model, "label_vectors") else model.label_embedding.weight  # [C, d_l]
    classes, n = labels.shape[0], hidden.shape[0]
    rows = torch.cat([hidden.unsqueeze(0).expand(classes, n, -1), labels.unsqueeze(1).expand(classes, n, -1)], dim=-1)
    return rows.reshape(classes * n, -1)


def calibrate(model: QuantModel, batches: Iterable[Batch]) -> int:
    """Set every activation scale from the batches (section 4.2.2); returns the number of documents.

    Activation quantizers run as observers on a float forward pass (weights unquantized), each
    averaging its per-call percentile over calls; every LSTM time step is one call.
    """
    if model.final_layer_algorithm != "none":
        raise DataError(f"calibration after {model.final_layer_algorithm} is refused: the final layer's weights were already changed")
    if is_calibrated(model):
        raise DataError("model is already calibrated; quantize the float model again to recalibrate")
    batches = list(batches)
    if not batches:
        raise DataError("calibration set is empty")
    driver = _FinalLayerDriver(model, observe_only=True).eval()
    documents = 0
    with torch.no_grad(), calibration_mode(driver):
        for tokens, lengths in batches:
            driver(tokens, lengths)
            documents += int(tokens.shape[0])
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


# --------------------------------------------------------------------------------------------------
# GPFQ on the final linear layer (section 4.2.3)
# --------------------------------------------------------------------------------------------------


def _run_gpfq_family(driver: nn.Module, batches: list[Batch], mode: Callable[..., Any]) -> int:
    with torch.no_grad(), mode(driver) as algorithm:
        layers = algorithm.num_layers
        for _ in range(layers):
            for tokens, lengths in batches:
                algorithm.model(tokens, lengths)
            algorithm.update()
    return layers


FINAL_LAYER_ALGORITHMS: dict[str, Callable[..., Any] | None] = {
    "none": None,
    "gpfq": lambda m: gpfq_mode(m, use_quant_activations=True, act_order=False, algorithm_impl=GPFQ),
    "qronos": lambda m: gpfq_mode(m, use_quant_activations=True, act_order=False, algorithm_impl=Qronos),
    "gptq": lambda m: gptq_mode(m, use_quant_activations=True, act_order=False),
}


def check_algorithm(name: Any, where: str = "calibration.final_layer_algorithm") -> str:
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
    start = time.perf_counter()
    mode = FINAL_LAYER_ALGORITHMS[algorithm]
    if mode is not None:
        layers = _run_gpfq_family(_FinalLayerDriver(model).eval(), batches, mode)
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
        "seconds": round(time.perf_counter() - start, 3),
        "weight_scale": scale_before,
        "changed_weight_fraction": float((after != before).float().mean()),
        "max_abs_float_weight": float(layer.weight.detach().abs().max()),
    }


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def quant_decoder_parts(model: QuantGenerativeLSTM) -> DecoderParts:
    """The quantized decoder split as W_h h + (W_l l_y + b), with its input quantizer (section 3.2)."""
    hidden = model.config.hidden_size
    decoder = model.decoder
    weight = _unpack_quant_tensor(decoder.quant_weight())
    return DecoderParts(
        weight[:, :hidden],
        weight[:, hidden:],
        decoder.bias,
        model.label_vectors(),
        lambda x: _unpack_quant_tensor(decoder.input_quant(x)),
    )


@torch.no_grad()
def discriminative_logits(model: QuantDiscriminativeLSTM, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    require_calibrated(model)
    return model(tokens, lengths)


@torch.no_grad()
def label_losses(model: QuantGenerativeLSTM, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, C] sequence losses (equation 13) from ONE quantized LSTM pass and the decomposed decoder."""
    require_calibrated(model)
    inputs, targets, mask = generative_io(_trim(tokens, lengths), lengths)
    return document_label_losses(model.hidden_states(inputs), targets, mask, quant_decoder_parts(model))


@torch.no_grad()
def label_losses_per_label(model: QuantGenerativeLSTM, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reference path: the full quantized model once per label."""
    require_calibrated(model)
    return generative_label_losses_naive(model, tokens, lengths, model.config.num_classes)


@torch.no_grad()
def predict(model: QuantModel, tokens: torch.Tensor, lengths: torch.Tensor, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """Predicted labels [B]: argmax of the logits, or equation 14 (6 with a prior) for the generative model."""
    if isinstance(model, QuantDiscriminativeLSTM):
        return discriminative_logits(model, tokens, lengths).argmax(dim=1)
    return classify_generative(label_losses(model, tokens, lengths), log_prior)


def quant_scorer(model: QuantModel) -> Scorer:
    """An :mod:`evaluation` scorer ([B, C], higher is better) for a calibrated quantized model."""
    require_calibrated(model)
    if isinstance(model, QuantDiscriminativeLSTM):
        return lambda tokens, lengths: torch.log_softmax(discriminative_logits(model, tokens, lengths), dim=1)
    return lambda tokens, lengths: -label_losses(model, tokens, lengths)


# --------------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def final_layer_rows(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, quantized_input: bool = True) -> torch.Tensor:
    """The final linear layer's input rows (after its input quantizer when the model has one)."""
    if model.config.model_type == "discriminative":
        rows = model.final_hidden(tokens, lengths)
    else:
        rows = generative_decoder_rows(model, tokens, lengths)
    layer = model.classifier if model.config.model_type == "discriminative" else model.decoder
    if quantized_input and hasattr(layer, "input_quant"):
        rows = _unpack_quant_tensor(layer.input_quant(rows))
    return rows


@torch.no_grad()
def final_layer_output_error(qmodel: QuantModel, float_model: nn.Module, batches: Iterable[Batch]) -> float:
    """Relative error of equation 22 on the batches: ||X W^T - X~ Q^T||^2 / ||X W^T||^2.

    X, W: the float model's final-layer input and weight; X~, Q: the quantized model's. Accumulated
    through Gram matrices in float64 so the generative [rows, V] products are never formed.
    """
    require_calibrated(qmodel)
    w = (float_model.classifier if float_model.config.model_type == "discriminative" else float_model.decoder).weight.double()
    q = _unpack_quant_tensor(qmodel.final_layer.quant_weight()).double()
    features = w.shape[1]
    xx = torch.zeros(features, features, dtype=torch.float64)
    xq = torch.zeros_like(xx)
    qq = torch.zeros_like(xx)
    for tokens, lengths in batches:
        x = final_layer_rows(float_model, tokens, lengths, quantized_input=False).double()
        xt = final_layer_rows(qmodel, tokens, lengths).double()
        xx += x.T @ x
        xq += x.T @ xt
        qq += xt.T @ xt
    reference = float(((w @ xx) * w).sum())
    error = reference - 2.0 * float(((w @ xq) * q).sum()) + float(((q @ qq) * q).sum())
    return max(error, 0.0) / reference


def _lstm_step(lstm: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None):
    if isinstance(lstm, qnn.QuantLSTM):
        out, (h, c) = lstm(x, *(state if state is not None else (None, None)))
    else:
        out, (h, c) = lstm(x, state)
    return out, (h, c)


@torch.no_grad()
def lstm_state_trace(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h_t and c_t of the last LSTM layer at every step, ``[B, T, H]`` each, and the mask of real steps.

    The LSTM runs one step at a time so that c_t is visible (float or quantized model alike); the
    generative model's steps are its inputs ``<bos> x_1 .. x_T``.
    """
    tokens = _trim(tokens, lengths)
    if model.config.model_type == "generative":
        inputs, _, mask = generative_io(tokens, lengths)
    else:
        inputs = tokens
        mask = torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    x = model.lstm_inputs(inputs) if hasattr(model, "lstm_inputs") else model.embedding(inputs)
    state = None
    hidden, cells = [], []
    for t in range(x.shape[1]):
        out, state = _lstm_step(model.lstm, x[:, t : t + 1], state)
        hidden.append(out[:, 0])
        cells.append(state[1][-1])
    return torch.stack(hidden, dim=1), torch.stack(cells, dim=1), mask


@torch.no_grad()
def hidden_state_stats(model: nn.Module, batches: Iterable[Batch], percentiles: Sequence[float] = (50.0, 99.0, 99.99)) -> dict[str, float]:
    """Fraction of exactly-zero h_t, and |h|, |c| percentiles, at REAL positions (float or quantized model).

    They explain low-bit results: a collapsed cell state shows as zero h_t (BREVITAS_NOTES.md).
    """
    hs, cs = [], []
    for tokens, lengths in batches:
        hidden, cells, mask = lstm_state_trace(model, tokens, lengths)
        hs.append(hidden[mask])
        cs.append(cells[mask])
    h_all, c_all = torch.cat(hs), torch.cat(cs)
    h_abs = h_all.abs().flatten().numpy().astype(np.float64)
    c_abs = c_all.abs().flatten().numpy().astype(np.float64)
    stats: dict[str, float] = {"positions": int(h_all.shape[0]), "zero_h_fraction": float((h_all == 0).float().mean())}
    for p in percentiles:
        key = f"{p:g}".replace(".", "_")
        stats[f"abs_h_p{key}"] = float(np.percentile(h_abs, p))
        stats[f"abs_c_p{key}"] = float(np.percentile(c_abs, p))
    stats["abs_c_max"] = float(c_abs.max())
    return stats


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def quantized_state_dict(model: QuantModel) -> dict[str, torch.Tensor]:
    """The state dict without GPFQ's ``weight_orig`` copy of the float weights (the float checkpoint has it)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith(".weight_orig")}


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
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_quantized(path: str | Path, config: ModelConfig, spec: QuantSpec, *, calibrated: bool = True) -> QuantModel:
    """Load a quantized checkpoint, refusing one built for another model, bit width or quantization setting,
    or one whose calibration state is not ``calibrated``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: quantized checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled-object files
        raise DataError(f"{path}: not a loadable quantized checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
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
        raise DataError(f"{path}: quantization settings differ from params: " + ", ".join(f"quantization.{k}: file {saved_spec.get(k)!r} vs {spec.to_dict()[k]!r}" for k in differing))
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
