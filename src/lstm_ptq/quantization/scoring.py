"""Class scores of a calibrated quantized model, for :mod:`lstm_ptq.evaluation` (sections 3.2, 4.3.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from brevitas.quant_tensor import _unpack_quant_tensor

from ..evaluation import Scorer
from ..models import DecoderParts, document_label_losses, generative_io, generative_label_losses_naive, trim_padding
from .activations import require_calibrated

if TYPE_CHECKING:
    from .modules import QuantDiscriminativeLSTM, QuantGenerativeLSTM, QuantModel


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
    inputs, targets, mask = generative_io(trim_padding(tokens, lengths), lengths)
    return document_label_losses(model.hidden_states(inputs), targets, mask, quant_decoder_parts(model))


@torch.no_grad()
def label_losses_per_label(model: QuantGenerativeLSTM, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reference path: the full quantized model once per label."""
    require_calibrated(model)
    return generative_label_losses_naive(model, tokens, lengths, model.config.num_classes)


def quant_scorer(model: QuantModel) -> Scorer:
    """An :mod:`evaluation` scorer ([B, C], higher is better) for a calibrated quantized model."""
    require_calibrated(model)
    return model.class_scores
