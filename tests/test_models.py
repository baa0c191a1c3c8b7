"""The float classifiers: equation-level invariants, fast generative scoring, checkpoint safety."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_ptq.artifacts import load_torch
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.evaluation import batch_tensors, length_sorted_batches
from lstm_ptq.models import (
    DecoderParts,
    DiscriminativeLSTM,
    GenerativeLSTM,
    ModelConfig,
    classify_generative,
    generative_io,
    generative_label_losses,
    generative_label_losses_naive,
    label_losses_fast,
    load_model,
    save_state_dict,
)
from lstm_ptq.preprocess import load_split, load_vocabulary
from lstm_ptq.text import BOS_ID, EOS_ID, PAD_ID


def _real_batch(root: Path, rows: int = 64):
    split = load_split(root / "data" / "tokenized" / "ag_news", "test")
    return split, batch_tensors(split, np.arange(rows))


def test_generative_io_shifts_and_masks() -> None:
    tokens = torch.tensor([[5, 6, 7], [8, 0, 0]])
    inputs, targets, mask = generative_io(tokens, torch.tensor([3, 1]))
    assert inputs.tolist() == [[BOS_ID, 5, 6, 7], [BOS_ID, 8, 0, 0]]
    assert targets.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


@pytest.mark.parametrize("num_classes", [4, 14])
def test_fast_generative_scoring_matches_per_label_path(small_ag_news: Path, num_classes: int) -> None:
    """One LSTM pass + decomposed decoder == the full model run once per label (relative diff < 1e-5)."""
    torch.manual_seed(0)
    vocab = len(load_vocabulary(small_ag_news / "data" / "tokenized" / "ag_news"))
    model = GenerativeLSTM(ModelConfig("generative", vocab, num_classes)).eval()
    with torch.no_grad():  # spread the label embeddings so labels really differ
        model.label_embedding.weight.mul_(3.0)
    _, (tokens, lengths) = _real_batch(small_ag_news)
    fast = generative_label_losses(model, tokens, lengths)
    naive = generative_label_losses_naive(model, tokens, lengths, num_classes)
    relative = ((fast - naive).abs() / naive.abs()).max().item()
    assert relative < 1e-5
    assert torch.equal(classify_generative(fast), classify_generative(naive))
    assert fast.std(dim=1).mean() > 1e-3  # labels are distinguishable: the check above is not vacuous


def _direct_label_losses(hidden: torch.Tensor, targets: torch.Tensor, parts: DecoderParts) -> torch.Tensor:
    """[N, C] cross-entropy of the concatenated decoder, written the obvious way (float64)."""
    h, wh, wl, b, lab = (x.double() for x in (hidden, parts.weight_h, parts.weight_l, parts.bias, parts.label_embeddings))
    logits = (h @ wh.T).unsqueeze(1) + (lab @ wl.T + b).unsqueeze(0)  # [N, C, V]
    return torch.logsumexp(logits, dim=2) - logits.gather(2, targets.long().view(-1, 1, 1).expand(-1, lab.shape[0], 1)).squeeze(2)


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_fast_label_losses_match_the_direct_softmax_for_any_chunking(chunk: int) -> None:
    torch.manual_seed(1)
    vocab, hidden_size, label_dim, classes, n = 300, 16, 8, 5, 203
    parts = DecoderParts(torch.randn(vocab, hidden_size), torch.randn(vocab, label_dim), torch.randn(vocab), 2 * torch.randn(classes, label_dim), lambda x: x)
    hidden, targets = torch.randn(n, hidden_size), torch.randint(0, vocab, (n,))
    fast = label_losses_fast(hidden, targets, parts, chunk=chunk)
    assert fast.shape == (n, classes)
    torch.testing.assert_close(fast.double(), _direct_label_losses(hidden, targets, parts), rtol=1e-5, atol=1e-4)


def test_fast_label_losses_survive_labels_whose_logits_underflow() -> None:
    """exp(a - max a) * exp(b_y - max b_y) underflows to 0 for every word when a and b_y peak at
    different words by > 100 nats; those rows fall back to the exact log-sum-exp."""
    vocab = 50
    weight_h = torch.zeros(vocab, 1)
    weight_h[3] = 1.0  # a: 0 everywhere, 200 at word 3 (h = 200)
    weight_l = torch.full((vocab, 1), -200.0)
    weight_l[7] = 0.0  # label 1: b = 0 at word 7, -200 elsewhere; label 0 has l = 0 (b = 0 everywhere)
    parts = DecoderParts(weight_h, weight_l, torch.zeros(vocab), torch.tensor([[0.0], [1.0]]), lambda x: x)
    hidden, targets = torch.tensor([[200.0], [0.0]]), torch.tensor([3, 7])
    fast = label_losses_fast(hidden, targets, parts)
    assert bool(torch.isfinite(fast).all())
    torch.testing.assert_close(fast.double(), _direct_label_losses(hidden, targets, parts), rtol=1e-6, atol=1e-4)


def test_padding_does_not_change_either_model(small_ag_news: Path) -> None:
    """Equation 2 takes the hidden state at the last REAL token; trailing padding must not matter."""
    torch.manual_seed(1)
    split, (tokens, lengths) = _real_batch(small_ag_news, 16)
    padded = torch.cat([tokens, torch.zeros((tokens.shape[0], 9), dtype=tokens.dtype)], dim=1)
    disc = DiscriminativeLSTM(ModelConfig("discriminative", 3000, 4)).eval()
    gen = GenerativeLSTM(ModelConfig("generative", 3000, 4)).eval()
    with torch.no_grad():
        assert torch.allclose(disc(tokens, lengths), disc(padded, lengths), atol=1e-6)
        assert torch.allclose(generative_label_losses(gen, tokens, lengths), generative_label_losses(gen, padded, lengths), atol=1e-4)
        # ...while the last padded position would give a different representation
        last_padded = disc.lstm(disc.embedding(padded))[0][:, -1]
        assert not torch.allclose(disc.final_hidden(padded, lengths), last_padded, atol=1e-4)


def test_generative_loss_is_sum_of_token_nll() -> None:
    torch.manual_seed(2)
    model = GenerativeLSTM(ModelConfig("generative", 50, 3, 8, 8, 1, 4)).eval()
    tokens, lengths, labels = torch.tensor([[5, 6, 7]]), torch.tensor([3]), torch.tensor([2])
    with torch.no_grad():
        hidden = model.hidden_states(torch.tensor([[BOS_ID, 5, 6, 7]]))[0]
        logits = model.decoder(torch.cat([hidden, model.label_embedding.weight[2].expand(4, -1)], dim=1))
        expected = -torch.log_softmax(logits, dim=1)[torch.arange(4), torch.tensor([5, 6, 7, EOS_ID])].sum()
        assert torch.allclose(model(tokens, lengths, labels)[0], expected, atol=1e-5)


def test_config_validation() -> None:
    with pytest.raises(ParamError, match="model_type"):
        ModelConfig("bayesian", 10, 2)
    with pytest.raises(ParamError, match="hidden_size"):
        ModelConfig("generative", 10, 2, hidden_size=0)


def test_checkpoint_errors_are_clear(tmp_path: Path) -> None:
    config = ModelConfig("discriminative", 100, 4, 16, 16)
    model = DiscriminativeLSTM(config)
    good = tmp_path / "model.pt"
    save_state_dict(good, model.state_dict())
    assert torch.equal(load_model(config, good).classifier.weight, model.classifier.weight)

    with pytest.raises(DataError, match=r"embedding.weight.*\(100, 16\)"):
        load_model(ModelConfig("discriminative", 120, 4, 16, 16), good)  # other vocabulary size
    with pytest.raises(DataError, match="missing"):
        load_model(ModelConfig("generative", 100, 4, 16, 16), good)
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)  # a pickled module, not a state dict: refused by weights_only=True
    with pytest.raises(DataError, match="whole.pt"):
        load_model(config, whole)
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(DataError, match="expected a state dict"):
        load_model(config, not_dict)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(pickle.dumps("x"))
    with pytest.raises(DataError, match="garbage.pt"):
        load_model(config, garbage)
    with pytest.raises(DataError, match="not found"):
        load_model(config, tmp_path / "absent.pt")


def test_length_sorted_batches_cover_every_row_once() -> None:
    lengths = np.array([5, 1, 9, 3, 3, 7, 2])
    batches = list(length_sorted_batches(lengths, 3))
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert [lengths[b].tolist() for b in batches] == [[1, 2, 3], [3, 5, 7], [9]]


def test_load_torch_refuses_an_empty_file_by_name(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.pt: not a loadable state dict \(\w+"):
        load_torch(empty, "state dict")
    with pytest.raises(DataError, match=r"empty\.pt: not a loadable state dict"):
        load_model(ModelConfig("discriminative", 10, 2, 4, 4), empty)
