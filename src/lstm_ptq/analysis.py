"""Distribution statistics of float and quantized models: final-layer error (equation 22) and LSTM states.

They explain low-bit results (sections 4.2.3, 4.3.2); docs/quantization.md reads the cell-state
collapse against :func:`hidden_state_stats`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .quantization import Batch, FastQuantLSTM, QuantModel, require_calibrated  # before Brevitas: it imports Brevitas

# isort: split

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.quant_tensor import _unpack_quant_tensor
from torch import nn

from .models import trim_padding


@torch.no_grad()
def final_layer_rows(
    model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None, *, quantized_input: bool = True
) -> torch.Tensor:
    """The final linear layer's input rows (after its input quantizer when the model has one)."""
    rows = model.final_layer_inputs(tokens, lengths, feed_labels)
    layer = model.final_layer
    if quantized_input and hasattr(layer, "input_quant"):
        rows = _unpack_quant_tensor(layer.input_quant(rows))
    return rows


@dataclass(frozen=True)
class FinalLayerGrams:
    """The Gram matrices equation 22 needs on a set of batches, float64: X^T X, X^T X~ and X~^T X~."""

    xx: torch.Tensor
    xq: torch.Tensor
    qq: torch.Tensor


@torch.no_grad()
def final_layer_grams(qmodel: QuantModel, float_model: nn.Module, batches: Iterable[Batch]) -> FinalLayerGrams:
    """X: the float model's final-layer input rows, X~: the quantized model's (after its input quantizer).

    A final-layer algorithm (GPFQ) changes the final layer's weights only, never its input rows, so the
    grams of one set of batches serve the error before and after it (:func:`final_layer_output_error`).
    """
    require_calibrated(qmodel)
    features = float_model.final_layer.weight.shape[1]
    xx = torch.zeros(features, features, dtype=torch.float64)
    xq = torch.zeros_like(xx)
    qq = torch.zeros_like(xx)
    for batch in batches:
        x = final_layer_rows(float_model, *batch, quantized_input=False).double()
        xt = final_layer_rows(qmodel, *batch).double()
        xx += x.T @ x
        xq += x.T @ xt
        qq += xt.T @ xt
    return FinalLayerGrams(xx, xq, qq)


@torch.no_grad()
def final_layer_output_error(qmodel: QuantModel, float_model: nn.Module, batches: Iterable[Batch] | FinalLayerGrams) -> float:
    """Relative error of equation 22 on the batches: ||X W^T - X~ Q^T||^2 / ||X W^T||^2.

    X, W: the float model's final-layer input and weight; X~, Q: the quantized model's. Accumulated
    through Gram matrices in float64 so the generative [rows, V] products are never formed; ``batches``
    may be their :func:`final_layer_grams`, computed once for the errors before and after GPFQ.
    """
    require_calibrated(qmodel)
    grams = batches if isinstance(batches, FinalLayerGrams) else final_layer_grams(qmodel, float_model, batches)
    w = float_model.final_layer.weight.double()
    q = _unpack_quant_tensor(qmodel.final_layer.quant_weight()).double()
    reference = float(((w @ grams.xx) * w).sum())
    error = reference - 2.0 * float(((w @ grams.xq) * q).sum()) + float(((q @ grams.qq) * q).sum())
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
    inputs, mask = model.lstm_steps(trim_padding(tokens, lengths), lengths)
    x = model.lstm_inputs(inputs)
    if isinstance(model.lstm, FastQuantLSTM):  # inside using_fast_lstm(model): the same h_t and c_t in one pass
        hidden, cells = model.lstm.trace(x)
        return hidden, cells, mask
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

    They explain low-bit results: a collapsed cell state shows as zero h_t (docs/quantization.md).
    """
    hs, cs = [], []
    for tokens, lengths, *_ in batches:
        hidden, cells, mask = lstm_state_trace(model, tokens, lengths)
        hs.append(hidden[mask])
        cs.append(cells[mask])
    h_all, c_all = torch.cat(hs), torch.cat(cs)
    h_abs = h_all.abs().flatten().cpu().numpy().astype(np.float64)
    c_abs = c_all.abs().flatten().cpu().numpy().astype(np.float64)
    stats: dict[str, float] = {"positions": int(h_all.shape[0]), "zero_h_fraction": float((h_all == 0).float().mean())}
    for p in percentiles:
        key = f"{p:g}".replace(".", "_")
        stats[f"abs_h_p{key}"] = float(np.percentile(h_abs, p))
        stats[f"abs_c_p{key}"] = float(np.percentile(c_abs, p))
    stats["abs_c_max"] = float(c_abs.max())
    return stats
