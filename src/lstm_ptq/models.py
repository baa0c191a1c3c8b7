"""The two LSTM classifiers of the paper's section 3.

- :class:`DiscriminativeLSTM`: embedding -> LSTM -> linear layer on the hidden state at the last REAL
  token of each padded sequence (equations 1-5).
- :class:`GenerativeLSTM`: class-conditional language model; the next-token distribution is a linear
  decoder over ``[h_t ; l_y]`` (equations 8-13), and classification picks the label with the lowest
  sequence loss (equation 14), optionally adding ``-log p(y)`` (equation 6).

Sequences are right-padded with ``<pad>`` (id 0). The generative model reads ``<bos> x_1 .. x_T`` and
predicts ``x_1 .. x_T <eos>``, so every real token, and the end of the document, is scored.

Both classes, and their Brevitas counterparts in :mod:`lstm_ptq.quantization`, expose the same
interface (``final_layer``, ``lstm_inputs``, ``lstm_steps``, ``final_layer_inputs``, ``class_scores``),
and :data:`MODEL_TYPES` maps each model type to its float and quantized class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from .artifacts import load_torch, read_json, readable_path, save_torch
from .errors import DataError, ParamError
from .paths import ProjectPaths

if TYPE_CHECKING:
    from .preprocess import EncodedSplit
from .text import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class ModelType:
    """One classifier of section 3: its float class and, once :mod:`lstm_ptq.quantization` is imported, its Brevitas class."""

    name: str
    float_class: type[nn.Module]
    quant_class: type[nn.Module] | None = None


# The registry of model types, filled below the float classes; iterating it gives the names.
MODEL_TYPES: dict[str, ModelType] = {}

# The integer sizes of a model config.
_SIZES = ("vocab_size", "num_classes", "embedding_dim", "hidden_size", "num_layers", "label_embedding_dim")
# The most weights a model may hold (8 GiB of float32): a config.json asking for more is refused before torch
# tries to allocate it. The generative model of params.yaml (10,000 words, sizes of 100) holds about 3e6.
MAX_PARAMETERS = 2**31


@dataclass(frozen=True)
class ModelConfig:
    model_type: str
    vocab_size: int
    num_classes: int
    embedding_dim: int = 100
    hidden_size: int = 100
    num_layers: int = 1
    label_embedding_dim: int = 100  # generative only (d_l, equation 9)

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ParamError(f"model_type: unknown model {self.model_type!r}; expected one of {list(MODEL_TYPES)}")
        for name in _SIZES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(f"model.{name}: {value!r} is not an integer")
            if value < 1:
                raise ParamError(f"model.{name}: {value!r} must be >= 1")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ParamError(
                f"model: {self.parameter_count():,} weights, more than the {MAX_PARAMETERS:,} this pipeline allocates"
                f" (vocab_size={self.vocab_size}, embedding_dim={self.embedding_dim}, hidden_size={self.hidden_size}, num_layers={self.num_layers})"
            )

    def parameter_count(self) -> int:
        """The number of weights the model of this config holds, computed without allocating any."""
        h = self.hidden_size
        lstm = 4 * h * (self.embedding_dim + h) + 8 * h + (self.num_layers - 1) * (4 * h * 2 * h + 8 * h)  # W_ih, W_hh, two biases per layer
        if self.model_type == "generative":
            head = self.num_classes * self.label_embedding_dim + (h + self.label_embedding_dim + 1) * self.vocab_size
        else:
            head = (h + 1) * self.num_classes
        return self.vocab_size * self.embedding_dim + lstm + head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "model config") -> ModelConfig:
        """A config read from a file: unknown or missing keys, a value of the wrong type or size are a
        DataError naming ``where`` (the file), raised before any tensor is allocated."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise DataError(f"{where}: unknown keys {sorted(unknown)}")
        missing = sorted({"model_type", "vocab_size", "num_classes"} - set(data))
        if missing:
            raise DataError(f"{where}: missing keys {missing}")
        try:
            return cls(**data)
        except ParamError as exc:
            raise DataError(f"{where}: {exc}") from None


def last_real_index(lengths: torch.Tensor) -> torch.Tensor:
    if bool((lengths < 1).any()):
        raise DataError("every sequence needs at least one real token (length >= 1)")
    return lengths.long() - 1


def trim_padding(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Drop trailing all-padding columns: a unidirectional LSTM's real positions cannot see them."""
    last_real_index(lengths)
    return tokens[:, : int(lengths.max())]


class DiscriminativeLSTM(nn.Module):
    """Equations 1-4: z = W h_T with h_T the hidden state at the last real token (equation 2)."""

    model_type = "discriminative"
    scores_are_likelihoods = False  # class_scores are log p(y | x) already: no class prior to add

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True)
        self.classifier = nn.Linear(config.hidden_size, config.num_classes)

    @property
    def final_layer(self) -> nn.Linear:
        return self.classifier

    def lstm_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.embedding(inputs)

    def lstm_steps(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's input ids (the document) and the mask of its real steps."""
        return tokens, torch.arange(tokens.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)

    def final_hidden(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.lstm_inputs(tokens))
        index = last_real_index(lengths).to(outputs.device)
        return outputs[torch.arange(outputs.shape[0], device=outputs.device), index]

    def final_layer_inputs(self, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The classifier's input rows: h_T of each document, ``[B, H]``."""
        refuse_feed_labels(feed_labels)
        return self.final_hidden(tokens, lengths)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class logits [B, C]."""
        return self.classifier(self.final_hidden(tokens, lengths))

    def class_scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, C] log class probabilities (higher is better)."""
        return torch.log_softmax(self(tokens, lengths), dim=1)

    def training_loss(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """Equation 5 per batch: (mean loss to minimise, summed loss to report, documents it averages over)."""
        loss = F.cross_entropy(self(tokens, lengths), labels, reduction="sum")
        return loss / len(lengths), float(loss.detach()), len(lengths)


def generative_io(tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs ``<bos> x_1..x_T``, targets ``x_1..x_T <eos>`` and the mask of real target positions."""
    batch, width = tokens.shape
    bos = torch.full((batch, 1), BOS_ID, dtype=tokens.dtype, device=tokens.device)
    inputs = torch.cat([bos, tokens], dim=1)
    targets = torch.cat([tokens, torch.full((batch, 1), PAD_ID, dtype=tokens.dtype, device=tokens.device)], dim=1)
    rows = torch.arange(batch, device=tokens.device)
    targets[rows, lengths.long().to(tokens.device)] = EOS_ID
    positions = torch.arange(width + 1, device=tokens.device).unsqueeze(0)
    mask = positions <= lengths.long().to(tokens.device).unsqueeze(1)
    return inputs, targets, mask


def generative_decoder_rows(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None) -> torch.Tensor:
    """``[h_t ; l_y]`` for every real position (rows) and every label (blocks): ``[C * N_real, H + d_l]``;
    with ``feed_labels`` (one label per document) only that label's rows: ``[N_real, H + d_l]``."""
    inputs, _, mask = generative_io(trim_padding(tokens, lengths), lengths)
    hidden = model.hidden_states(inputs)[mask]  # [N, H]
    labels = model.label_vectors()  # [C, d_l]
    if feed_labels is not None:
        document = torch.arange(mask.shape[0]).unsqueeze(1).expand_as(mask)[mask]  # the document of each real position
        return torch.cat([hidden, labels[feed_labels.long()[document]]], dim=-1)
    classes, n = labels.shape[0], hidden.shape[0]
    rows = torch.cat([hidden.unsqueeze(0).expand(classes, n, -1), labels.unsqueeze(1).expand(classes, n, -1)], dim=-1)
    return rows.reshape(classes * n, -1)


def refuse_feed_labels(feed_labels: torch.Tensor | None) -> None:
    """A discriminative model's final layer has no label input: decoder feeding is for the generative model."""
    if feed_labels is not None:
        raise ValueError("calibration.decoder_feeding applies to the generative model's decoder only")


class GenerativeSteps:
    """The LSTM passes of a generative classifier (equations 10-11), shared by the float model and its
    Brevitas counterpart; each supplies ``lstm``, ``lstm_inputs`` and ``label_vectors``."""

    def lstm_steps(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM's input ids ``<bos> x_1 .. x_T`` and the mask of its real steps."""
        inputs, _, mask = generative_io(tokens, lengths)
        return inputs, mask

    def hidden_states(self, inputs: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(self.lstm_inputs(inputs))
        return outputs

    def final_layer_inputs(self, tokens: torch.Tensor, lengths: torch.Tensor, feed_labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's input rows for every real position and every label, or each document's
        ``feed_labels`` only (:func:`generative_decoder_rows`)."""
        return generative_decoder_rows(self, tokens, lengths, feed_labels)


class GenerativeLSTM(GenerativeSteps, nn.Module):
    """Equations 7-14: p(x | y) = prod_t softmax(W [h_t ; l_y])[x_{t+1}]."""

    model_type = "generative"
    scores_are_likelihoods = True  # class_scores are log p(x | y): equation 6 adds log p(y)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, config.num_layers, batch_first=True)
        self.label_embedding = nn.Embedding(config.num_classes, config.label_embedding_dim)
        self.decoder = nn.Linear(config.hidden_size + config.label_embedding_dim, config.vocab_size)

    @property
    def final_layer(self) -> nn.Linear:
        return self.decoder

    def lstm_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.embedding(inputs)

    def label_vectors(self) -> torch.Tensor:
        """l_y for every label, [C, d_l] (equation 9)."""
        return self.label_embedding.weight

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed next-token cross-entropy per document given its label (equation 13), shape [B].

        The decoder runs on real positions only: padding costs no vocabulary softmax.
        """
        inputs, targets, mask = generative_io(tokens, lengths)
        hidden = self.hidden_states(inputs)
        positions = mask.reshape(-1).nonzero().squeeze(1)
        doc_index = positions // mask.shape[1]
        h = hidden.reshape(-1, hidden.shape[-1])[positions]
        label_e = self.label_embedding(labels.long().to(h.device))[doc_index]
        logits = self.decoder(torch.cat([h, label_e], dim=-1))
        nll = F.cross_entropy(logits, targets.reshape(-1)[positions].long(), reduction="none")
        return nll.new_zeros(tokens.shape[0]).index_add_(0, doc_index, nll)

    def class_scores(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, C] minus the sequence losses (equation 14: the lowest loss wins)."""
        return -generative_label_losses(self, tokens, lengths)

    def training_loss(self, tokens: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """Equation 13 per batch: (loss per predicted token to minimise, summed document losses to report,
        documents)."""
        per_doc = self(tokens, lengths, labels)
        units = int(lengths.sum()) + len(lengths)  # predicted tokens, <eos> included
        return per_doc.sum() / units, float(per_doc.detach().sum()), len(lengths)


MODEL_TYPES.update({cls.model_type: ModelType(cls.model_type, cls) for cls in (DiscriminativeLSTM, GenerativeLSTM)})


def register_quant_class(cls: type[nn.Module]) -> None:
    """Record ``cls`` as the quantized counterpart of the float model of type ``cls.model_type``."""
    MODEL_TYPES[cls.model_type] = replace(MODEL_TYPES[cls.model_type], quant_class=cls)


# --------------------------------------------------------------------------------------------------
# Generative scoring: all labels from one LSTM pass and one decoder pass.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderParts:
    """The decoder W [h ; l_y] + b split as W_h h + (W_l l_y + b), with its input quantizer (or identity).

    ``quantize_input`` is applied element-wise to h and to l_y; with one shared scale this equals
    quantizing the concatenation, so the decomposition stays exact for a quantized model.
    """

    weight_h: torch.Tensor  # [V, H]
    weight_l: torch.Tensor  # [V, d_l]
    bias: torch.Tensor | None  # [V]
    label_embeddings: torch.Tensor  # [C, d_l]
    quantize_input: Callable[[torch.Tensor], torch.Tensor]


def float_decoder_parts(model: GenerativeLSTM) -> DecoderParts:
    hidden = model.config.hidden_size
    weight = model.decoder.weight
    return DecoderParts(weight[:, :hidden], weight[:, hidden:], model.decoder.bias, model.label_embedding.weight, lambda x: x)


def label_losses_fast(hidden: torch.Tensor, targets: torch.Tensor, parts: DecoderParts, chunk: int = 512) -> torch.Tensor:
    """Per-position losses for every label, ``[N, C]``, from hidden states ``[N, H]`` of REAL positions.

    log sum_v exp(a_v + b_{y,v}) = m_a + m_y + log( sum_v exp(a_v - m_a) exp(b_{y,v} - m_y) ), so one
    exponentiation of the decoder output and one [C, V] x [V, n] product give all C log-normalisers.
    The decoder output of a chunk is computed transposed (``W_h h^T``, [V, n]: the faster GEMM layout
    for a 100-wide inner dimension) into one reused buffer and exponentiated in place, so the
    [N, V] logits are never materialised and no memory is allocated per chunk.
    """
    label_in = parts.quantize_input(parts.label_embeddings)
    label_logits = label_in @ parts.weight_l.T  # [C, V]
    if parts.bias is not None:
        label_logits = label_logits + parts.bias
    label_max = label_logits.max(dim=1, keepdim=True).values  # [C, 1]
    label_exp = torch.exp(label_logits - label_max)  # [C, V]
    weight_h = parts.weight_h.contiguous()  # [V, H]
    vocab, total = weight_h.shape[0], hidden.shape[0]
    out = hidden.new_empty((total, label_logits.shape[0]))
    storage = hidden.new_empty(vocab * min(chunk, max(total, 1)))
    for start in range(0, total, chunk):
        h = parts.quantize_input(hidden[start : start + chunk])
        t = targets[start : start + chunk].long()
        n = h.shape[0]
        logits = storage[: vocab * n].view(vocab, n)  # a^T, [V, n]
        torch.mm(weight_h, h.T, out=logits)
        target_logit = logits.gather(0, t.unsqueeze(0)).T + label_logits[:, t].T  # [n, C]
        a_max = logits.amax(dim=0, keepdim=True)  # [1, n]
        sums = label_exp @ logits.sub_(a_max).exp_()  # [C, n]
        log_z = a_max.T + torch.log(sums.T) + label_max.T  # [n, C]
        underflow = ~torch.isfinite(log_z)
        if bool(underflow.any()):  # a label's logits far below the document's: use the exact form there
            rows = underflow.any(dim=1).nonzero().squeeze(1)
            a = h[rows] @ weight_h.T
            log_z[rows] = torch.logsumexp(a.unsqueeze(1) + label_logits.unsqueeze(0), dim=2)
        out[start : start + n] = log_z - target_logit
    return out


def document_label_losses(hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, parts: DecoderParts) -> torch.Tensor:
    """Sequence loss (equation 13) of every document under every label, ``[B, C]``; padding costs nothing."""
    batch = hidden.shape[0]
    flat_mask = mask.reshape(-1)
    positions = flat_mask.nonzero().squeeze(1)
    doc_index = positions // mask.shape[1]
    per_position = label_losses_fast(hidden.reshape(-1, hidden.shape[-1])[positions], targets.reshape(-1)[positions], parts)
    losses = per_position.new_zeros((batch, per_position.shape[1]))
    losses.index_add_(0, doc_index, per_position)
    return losses


@torch.no_grad()
def generative_label_losses(model: GenerativeLSTM, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, C] sequence losses of a float generative model from ONE LSTM pass."""
    inputs, targets, mask = generative_io(tokens, lengths)
    return document_label_losses(model.hidden_states(inputs), targets, mask, float_decoder_parts(model))


@torch.no_grad()
def generative_label_losses_naive(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Reference path: the full model once per label (C LSTM passes, C vocabulary softmaxes)."""
    columns = []
    for label in range(num_classes):
        labels = torch.full((tokens.shape[0],), label, dtype=torch.long)
        columns.append(model(tokens, lengths, labels))
    return torch.stack(columns, dim=1)


def classify_generative(losses: torch.Tensor, log_prior: torch.Tensor | None = None) -> torch.Tensor:
    """Equation 14 (or 6 with a prior): argmin_y  L(x, y) - log p(y)."""
    if log_prior is not None:
        losses = losses - log_prior.unsqueeze(0)
    return losses.argmin(dim=1)


# --------------------------------------------------------------------------------------------------
# Construction and checkpoints
# --------------------------------------------------------------------------------------------------


def check_vocabulary_fits(config: ModelConfig, split: EncodedSplit, where: str) -> None:
    top = int(split.tokens.max()) if split.tokens.size else 0
    if top >= config.vocab_size:
        raise DataError(f"{where}: token id {top} is outside the vocabulary of {config.vocab_size} words")


def build_model(config: ModelConfig) -> nn.Module:
    return MODEL_TYPES[config.model_type].float_class(config)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True``; anything else is refused with a clear error."""
    path = Path(path)
    if not readable_path(path).is_file():
        raise DataError(f"{path}: checkpoint not found")
    state = load_torch(path, "state dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(f"{path}: expected a state dict (a mapping of names to tensors), found {type(state).__name__}")
    return state


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Load ``state`` into ``model`` after checking every key and shape; mismatches name the tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataError(f"{path}: checkpoint does not match the model: missing {missing}, unexpected {unexpected}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise DataError(
                f"{path}: tensor {name!r} has shape {tuple(state[name].shape)}, the model config expects {tuple(tensor.shape)}"
                " (vocabulary size, hidden size or number of classes differ)"
            )
    model.load_state_dict(state)
    return model


def load_model(config: ModelConfig, path: str | Path) -> nn.Module:
    return load_into(build_model(config), load_state_dict(path), path).eval()


def save_state_dict(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    save_torch(path, {k: v.cpu().contiguous() for k, v in state.items()})  # a CPU file from a cuda run too


def load_float_model(paths: ProjectPaths, dataset: str, model_type: str) -> tuple[ModelConfig, torch.nn.Module]:
    model_dir = paths.float_model_dir(dataset, model_type)
    config = ModelConfig.from_dict(read_json(model_dir / "config.json", expect=dict), where=str(model_dir / "config.json"))
    return config, load_model(config, model_dir / "model.pt")
