"""The Brevitas models and the quantization step (section 4.2.1): float weights in, weight scales fixed.

Why each quantizer is configured as it is: docs/quantization.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import brevitas.nn as qnn
import torch
from brevitas.core.scaling import ScalingImplType
from brevitas.core.scaling.standalone import ParameterFromStatsFromParameterScaling
from brevitas.graph.calibrate import quantization_status_manager
from brevitas.nn.quant_rnn import _QuantLSTMCell
from brevitas.proxy.runtime_quant import ActQuantProxyFromInjectorBase
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat, Uint8ActPerTensorFloat
from torch import nn

from ..errors import DataError
from ..models import MODEL_TYPES, GenerativeSteps, ModelConfig, generative_io, last_real_index, refuse_feed_labels, register_quant_class, trim_padding
from ..text import PAD_ID
from .scoring import discriminative_logits, label_losses
from .spec import WEIGHT_SCALINGS, QuantSpec


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


def _unsigned_act_quant(spec: QuantSpec, bit_width: int):
    return Uint8ActPerTensorFloat.let(bit_width=bit_width, high_percentile_q=spec.act_high_percentile)


class _ActOnly(nn.Module):
    """A disabled quantization point inside QuantLSTM's cell: its activation function (or identity) only."""

    def __init__(self, activation: nn.Module | None) -> None:
        super().__init__()
        self.activation = activation if activation is not None else nn.Identity()

    def forward(self, x: torch.Tensor):
        return (self.activation(x), None, None, None)


_LSTM_CELL_POINTS = (
    "output_quant",
    "cell_state_quant",
    "input_acc_quant",
    "forget_acc_quant",
    "cell_acc_quant",
    "output_acc_quant",
    "input_sigmoid_quant",
    "forget_sigmoid_quant",
    "cell_tanh_quant",
    "output_sigmoid_quant",
    "hidden_state_tanh_quant",
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
    gate = _act_quant(spec, spec.gate_bits)
    lstm = FlagAwareQuantLSTM(
        config.embedding_dim,
        config.hidden_size,
        config.num_layers,
        batch_first=True,
        weight_quant=_weight_quant(spec),
        bias_quant=None,
        io_quant=_act_quant(spec),  # h_t, at the cell's bit width
        gate_acc_quant=gate,
        sigmoid_quant=_unsigned_act_quant(spec, spec.gate_bits),
        tanh_quant=gate,  # tanh of the cell gate and of c_t
        cell_state_quant=_act_quant(spec, spec.cell_state_bits),
    )
    for layer in lstm.layers:  # pitfall: io_quant would also quantize x_t with the scale of h_t
        for direction in layer:
            direction.quantize_output_only = True
    return lstm


class _QuantEncoder(nn.Module):
    """The layers both quantized classifiers share, registered first and in this order: the token
    embedding, the LSTM input's own quantizer (see :func:`_quant_lstm`) and the QuantLSTM."""

    def __init__(self, config: ModelConfig, spec: QuantSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        self.final_layer_algorithm = "none"
        self.embedding = qnn.QuantEmbedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID, weight_quant=_weight_quant(spec))
        self.lstm_input_quant = qnn.QuantIdentity(act_quant=_act_quant(spec))
        self.lstm = _quant_lstm(config, spec)

    def lstm_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.lstm_input_quant(self.embedding(inputs))


class QuantDiscriminativeLSTM(_QuantEncoder):
    """Brevitas counterpart of :class:`models.DiscriminativeLSTM` (same parameter names)."""

    model_type = "discriminative"

    def __init__(self, config: ModelConfig, spec: QuantSpec) -> None:
        super().__init__(config, spec)
        self.classifier = qnn.QuantLinear(
            config.hidden_size, config.num_classes, bias=True, weight_quant=_weight_quant(spec), bias_quant=None, input_quant=_act_quant(spec)
        )

    @property
    def final_layer(self) -> qnn.QuantLinear:
        return self.classifier

    def lstm_steps(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's input ids (the document) and the mask of its real steps."""
        return tokens, torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)

    def final_hidden(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.lstm_inputs(trim_padding(tokens, lengths)))
        return outputs[torch.arange(outputs.shape[0]), last_real_index(lengths)]

    def final_layer_inputs(self, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's input rows: h_T of each document, ``[B, H]``."""
        refuse_feed_labels(feed_labels)
        return self.final_hidden(tokens, lengths)

    def final_layer_pass(
        self, tokens: torch.Tensor, lengths: torch.Tensor, observe_only: bool = False, feed_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The pass calibration and GPFQ drive on label-free batches: the model itself."""
        refuse_feed_labels(feed_labels)
        return self(tokens, lengths)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C] (equations 1-4)."""
        return self.classifier(self.final_hidden(tokens, lengths))

    def class_scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, C] log class probabilities (higher is better); refused before calibration."""
        return torch.log_softmax(discriminative_logits(self, tokens, lengths), dim=1)


class QuantGenerativeLSTM(GenerativeSteps, _QuantEncoder):
    """Brevitas counterpart of :class:`models.GenerativeLSTM` (same parameter names)."""

    model_type = "generative"

    def __init__(self, config: ModelConfig, spec: QuantSpec) -> None:
        super().__init__(config, spec)
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

    def label_vectors(self) -> torch.Tensor:
        """l_y for every label, [C, d_l] (equation 9), through the label embedding's quantizer."""
        return self.label_embedding(torch.arange(self.config.num_classes))

    def final_layer_pass(
        self, tokens: torch.Tensor, lengths: torch.Tensor, observe_only: bool = False, feed_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The decoder on ``[h_t ; l_y]`` for every real position and EVERY label, as inference scores them,
        or, with ``feed_labels`` (calibration.decoder_feeding), on each document's one label.

        One 3-D input ``(1, rows, H + d_l)``: Brevitas' GPxQ reshapes only up to 3-D inputs.
        With ``observe_only`` the decoder's input quantizer sees it but the [., V] product is skipped.
        """
        rows = self.final_layer_inputs(tokens, lengths, feed_labels).unsqueeze(0)
        if observe_only:
            return self.decoder.input_quant(rows)
        return self.decoder(rows)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed next-token cross-entropy per document given its label (equation 13), shape [B]."""
        inputs, targets, mask = generative_io(trim_padding(tokens, lengths), lengths)
        hidden = self.hidden_states(inputs)
        labels_e = self.label_embedding(labels.long()).unsqueeze(1).expand(-1, hidden.shape[1], -1)
        logits = self.decoder(torch.cat([hidden, labels_e], dim=-1))
        nll = nn.functional.cross_entropy(logits.transpose(1, 2), targets.long(), reduction="none")
        return (nll * mask).sum(dim=1)

    def class_scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, C] minus the sequence losses (equation 14); refused before calibration."""
        return -label_losses(self, tokens, lengths)


QuantModel = QuantDiscriminativeLSTM | QuantGenerativeLSTM
register_quant_class(QuantDiscriminativeLSTM)
register_quant_class(QuantGenerativeLSTM)


def build_quant_model(config: ModelConfig, spec: QuantSpec) -> QuantModel:
    """An empty quantized model (random weights, no scales): the skeleton a checkpoint loads into."""
    return MODEL_TYPES[config.model_type].quant_class(config, spec).eval()


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
    model_type = MODEL_TYPES[config.model_type]
    if not isinstance(float_model, model_type.float_class):
        raise DataError(f"expected a float {config.model_type} model, got {type(float_model).__name__}")
    qmodel = model_type.quant_class(config, spec)
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
