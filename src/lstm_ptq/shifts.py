"""Where PTQ moves a model (paper section 6): the value samples behind Figures 12-15 and the per-class effects.

- :func:`final_layer_weights`: the final linear layer's weights as the model computes with them (Figure 12);
- :func:`layer_activations`: embedding and LSTM outputs at every real step of a weight-quantized model
  before activation calibration (Figure 13);
- :func:`final_layer_outputs`: the final layer's outputs on a common input set (Figure 14), the generative
  decoder's ``[positions, V]`` outputs read at sampled (position, word) pairs so they are never formed;
- :func:`token_losses`: the generative model's token-level cross-entropy under each document's own label
  (Figure 15).

The statistics themselves (KS tests, densities) are :mod:`lstm_ptq.stats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .quantization import Batch, QuantModel, quant_decoder_parts, using_fast_lstm  # before Brevitas: it imports Brevitas

# isort: split

import numpy as np
import torch
from brevitas.graph.calibrate import quantization_status_manager
from brevitas.quant_tensor import _unpack_quant_tensor
from torch import nn

from .analysis import final_layer_rows
from .evaluation import batch_tensors
from .models import float_decoder_parts, generative_io, label_losses_fast, trim_padding
from .preprocess import EncodedSplit


def is_quantized(model: nn.Module) -> bool:
    return hasattr(model.final_layer, "quant_weight")


@torch.no_grad()
def final_layer_weights(model: nn.Module) -> torch.Tensor:
    """The final linear layer's weight matrix: the dequantized integer weights of a quantized model."""
    layer = model.final_layer
    return _unpack_quant_tensor(layer.quant_weight()).detach() if is_quantized(model) else layer.weight.detach()


@contextmanager
def weights_only(model: QuantModel) -> Iterator[QuantModel]:
    """The model before activation calibration, as the calibration data sees it (section 6.1.2): weights
    quantized, every activation quantizer off."""
    with quantization_status_manager(model, disable_act_quant=True, disable_weight_quant=False, disable_bias_quant=True, is_training=False):
        yield model


@torch.no_grad()
def layer_activations(model: nn.Module, batches: Iterable[Batch]) -> dict[str, np.ndarray]:
    """Every embedding output value and every LSTM output value ``h_t`` at the real steps of ``batches``
    (the LSTM's own steps: ``<bos> x_1..x_T`` for the generative model, ``x_1..x_T`` for the discriminative one)."""
    embedding, lstm = [], []
    for batch in batches:
        tokens, lengths = batch[0], batch[1]
        inputs, mask = model.lstm_steps(trim_padding(tokens, lengths), lengths)
        embedded = _unpack_quant_tensor(model.embedding(inputs))
        outputs, _ = model.lstm(model.lstm_inputs(inputs))
        embedding.append(embedded[mask].reshape(-1).cpu().numpy())
        lstm.append(_unpack_quant_tensor(outputs)[mask].reshape(-1).cpu().numpy())
    return {"embedding": np.concatenate(embedding), "lstm": np.concatenate(lstm)}


@torch.no_grad()
def final_layer_inputs(model: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """The final layer's input rows on ``batches`` (after its input quantizer in a quantized model): h_T per
    document for the discriminative model, ``[h_t ; l_y]`` per real position with each document's label
    (the batch's third element) for the generative one."""
    rows = []
    quantized = is_quantized(model)
    with using_fast_lstm(model) if quantized else _nothing(model):
        for batch in batches:
            rows.append(final_layer_rows(model, *batch, quantized_input=quantized))
    return torch.cat(rows)


@contextmanager
def _nothing(model: nn.Module) -> Iterator[nn.Module]:
    yield model


@torch.no_grad()
def final_layer_outputs(model: nn.Module, rows: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """The final layer's outputs on input ``rows`` (:func:`final_layer_inputs`): all of them, or only the
    (row, output unit) ``pairs``. Brevitas' QuantLinear here has no output or bias quantizer, so an output is
    the input row times the dequantized weight row plus the float bias."""
    weight = final_layer_weights(model)
    bias = model.final_layer.bias
    if pairs is None:
        out = rows @ weight.T
        return (out if bias is None else out + bias).reshape(-1).cpu().numpy()
    row, unit = pairs
    out = (rows[row] * weight[unit]).sum(dim=1)
    return (out if bias is None else out + bias[unit]).cpu().numpy()


def sample_pairs(rows: int, units: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``count`` (row, unit) pairs drawn without replacement from the ``rows x units`` outputs, by
    ``numpy.random.default_rng(seed)``; None when there are no more outputs than ``count`` (keep them all)."""
    total = rows * units
    if total <= count:
        return None
    flat = np.random.default_rng(seed).choice(total, size=count, replace=False)
    flat.sort()
    return torch.as_tensor(flat // units), torch.as_tensor(flat % units)


@torch.no_grad()
def token_losses(model: nn.Module, split: EncodedSplit, rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-token cross-entropy of a generative model at every real position of the ``rows`` documents of
    ``split``, under each document's own label (the terms of equation 13), and the split row each token
    belongs to (documents are batched in length order; the row array says which is which)."""
    quantized = is_quantized(model)
    parts = quant_decoder_parts(model) if quantized else float_decoder_parts(model)
    order = np.asarray(rows)[np.argsort(split.lengths[rows], kind="stable")]
    losses, documents = [], []
    with using_fast_lstm(model) if quantized else _nothing(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            tokens, lengths = batch_tensors(split, chunk)
            inputs, targets, mask = generative_io(trim_padding(tokens, lengths), lengths)
            hidden = model.hidden_states(inputs)
            per_label = label_losses_fast(hidden[mask], targets[mask], parts)  # [positions, C]
            document = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)[mask]
            labels = torch.as_tensor(split.labels[chunk], dtype=torch.long)
            losses.append(per_label.gather(1, labels[document].unsqueeze(1)).squeeze(1).cpu().numpy())
            documents.append(chunk[document.cpu().numpy()])
    return np.concatenate(losses), np.concatenate(documents)
