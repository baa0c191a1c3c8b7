"""The value samples of section 6's analysis (lstm_ptq.shifts) and the per-class effects (lstm_ptq.per_class),
checked against the pipeline's own scoring paths and constructed cases with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import train_briefly
from torch import nn

from lstm_ptq import quantization as Q
from lstm_ptq import shifts as S
from lstm_ptq.evaluation import evaluate, float_scorer, score_split
from lstm_ptq.models import ModelConfig, build_model
from lstm_ptq.per_class import per_class_effects, per_class_summary, score_variance
from lstm_ptq.preprocess import load_split, load_vocabulary


@pytest.fixture(scope="module")
def splits(small_ag_news: Path) -> dict:
    tokenized = small_ag_news / "data" / "tokenized" / "ag_news"
    out: dict = {name: load_split(tokenized, name) for name in ("train", "test")}
    out["vocab_size"] = len(load_vocabulary(tokenized).tokens)
    return out


@pytest.fixture(scope="module")
def models(splits: dict) -> dict[str, tuple[nn.Module, Q.QuantModel, Q.QuantModel]]:
    """Per model type: the float model, its 4-bit model before calibration, and the 4-bit calibrated model."""
    out = {}
    for model_type, steps in (("discriminative", 120), ("generative", 40)):
        torch.manual_seed(0)
        float_model = train_briefly(build_model(ModelConfig(model_type, splits["vocab_size"], 4, 16, 16, 1, 8)), splits["train"], steps, 32, 1e-2, 0)
        before = Q.quantize(float_model, Q.QuantSpec(bit_width=4))
        calibrated = Q.quantize(float_model, Q.QuantSpec(bit_width=4))
        Q.calibrate(calibrated, Q.token_batches(splits["train"], 64, np.arange(256)))
        out[model_type] = (float_model, before, calibrated)
    return out


def _test_batches(splits: dict, model_type: str, documents: int = 60) -> list:
    test = splits["test"]
    return Q.token_batches(test, 16, np.arange(documents), test.labels if model_type == "generative" else None)


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_final_layer_weights_are_the_float_weights_or_their_quantized_grid(model_type: str, models: dict) -> None:
    float_model, _, calibrated = models[model_type]
    assert torch.equal(S.final_layer_weights(float_model), float_model.final_layer.weight)
    weights = S.final_layer_weights(calibrated)
    scale = float(calibrated.final_layer.quant_weight().scale)
    steps = weights / scale
    assert torch.allclose(steps, steps.round(), atol=1e-4) and steps.abs().max() <= 7  # 4-bit narrow grid
    assert not torch.equal(weights, float_model.final_layer.weight)


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_layer_activations_before_calibration_use_quantized_weights_and_float_activations(model_type: str, models: dict, splits: dict) -> None:
    float_model, before, _ = models[model_type]
    batches = Q.token_batches(splits["train"], 32, np.arange(40))
    with S.weights_only(before):
        quantized = S.layer_activations(before, batches)
    reference = S.layer_activations(float_model, batches)
    # one value per real step and unit; the generative LSTM also reads <bos>
    steps = int(splits["train"].lengths[:40].sum()) + (40 if model_type == "generative" else 0)
    assert quantized["embedding"].size == reference["embedding"].size == steps * 16
    assert quantized["lstm"].size == reference["lstm"].size == steps * 16
    embedding_grid = before.embedding.quant_weight().value
    assert set(np.unique(quantized["embedding"])) <= set(np.unique(embedding_grid.detach().numpy()))
    assert not np.array_equal(quantized["embedding"], reference["embedding"])
    assert np.abs(quantized["lstm"]).max() <= 1.0  # h_t = o * tanh(c): no activation quantizer clipped it to a grid
    assert len(np.unique(quantized["lstm"])) > 1000


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_sampled_final_layer_outputs_are_the_full_outputs_at_those_pairs(model_type: str, models: dict, splits: dict) -> None:
    for model in models[model_type][::2]:  # float and calibrated
        rows = S.final_layer_inputs(model, _test_batches(splits, model_type))
        units = model.final_layer.out_features
        full = S.final_layer_outputs(model, rows).reshape(rows.shape[0], units)
        pairs = S.sample_pairs(rows.shape[0], units, 500, seed=3)
        if model_type == "discriminative":
            assert pairs is None  # 60 documents x 4 classes: every output is kept
            assert full.shape == (60, 4)
            continue
        sampled = S.final_layer_outputs(model, rows, pairs)
        np.testing.assert_allclose(sampled, full[pairs[0].numpy(), pairs[1].numpy()], rtol=1e-5, atol=1e-5)


def test_sample_pairs_are_distinct_seeded_and_in_range() -> None:
    a = S.sample_pairs(100, 50, 1000, seed=1)
    b = S.sample_pairs(100, 50, 1000, seed=1)
    c = S.sample_pairs(100, 50, 1000, seed=2)
    assert a is not None and all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0] * 50 + a[1], c[0] * 50 + c[1])
    flat = (a[0] * 50 + a[1]).numpy()
    assert len(np.unique(flat)) == 1000 and a[0].max() < 100 and a[1].max() < 50
    assert S.sample_pairs(10, 10, 100, seed=0) is None


@pytest.mark.parametrize("which", [0, 2])
def test_token_losses_sum_to_the_document_losses_the_classifier_scores(which: int, models: dict, splits: dict) -> None:
    """Equation 13: a document's loss under its label is the sum of its token losses, here against the
    scoring path the evaluation uses (float scorer, or the calibrated model's fast-LSTM scorer)."""
    model = models["generative"][which]
    test = splits["test"]
    rows = np.arange(0, 100, 2)
    losses, documents = S.token_losses(model, test, rows, 16)
    assert losses.size == documents.size == int((test.lengths[rows] + 1).sum())  # every word and <eos>
    assert set(documents) == set(rows)
    per_doc = np.bincount(documents, weights=losses, minlength=100)[rows]
    subset = type(test)(test.tokens[rows], test.lengths[rows], test.labels[rows], test.source_rows[rows])
    if which == 0:
        scores = score_split(float_scorer(model), subset, 16)
    else:
        with Q.using_fast_lstm(model):
            scores = score_split(Q.quant_scorer(model), subset, 16)
    np.testing.assert_allclose(per_doc, evaluate(scores, subset.labels).true_label_loss, rtol=1e-4)


def test_per_class_effects_on_a_constructed_case() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    float_scores = np.array([[0.0, -2.0]] * 4 + [[-2.0, 0.0]] * 2)  # all correct, variance 1 per document
    scores = np.array([[0.0, -1.0], [0.0, -1.0], [-1.0, 0.0], [-1.0, 0.0], [-3.0, 0.0], [-3.0, 0.0]])
    float_run = {"scores": float_scores, "predictions": float_scores.argmax(1)}
    run = {"scores": scores, "predictions": scores.argmax(1)}
    rows = per_class_effects(labels, float_run, run)
    assert [r["class_index"] for r in rows] == [0, 1]
    assert rows[0]["documents"] == 4 and rows[0]["float_accuracy"] == 1.0 and rows[0]["accuracy"] == 0.5 and rows[0]["accuracy_drop"] == 0.5
    assert rows[1]["accuracy_drop"] == 0.0
    assert rows[0]["float_score_variance"] == pytest.approx(1.0) and rows[0]["score_variance"] == pytest.approx(0.25)
    assert rows[1]["score_variance"] == pytest.approx(2.25)
    np.testing.assert_allclose(score_variance(scores), [0.25] * 4 + [2.25] * 2)


def test_per_class_effects_follow_the_saved_predictions_not_the_argmax() -> None:
    """A float evaluation with the training label prior predicts other than its scores' argmax."""
    labels = np.array([0, 1])
    scores = np.array([[0.0, -0.1], [0.0, -0.1]])
    float_run = {"scores": scores, "predictions": np.array([0, 1])}
    run = {"scores": scores, "predictions": np.array([0, 0])}
    rows = per_class_effects(labels, float_run, run)
    assert rows[1]["float_accuracy"] == 1.0 and rows[1]["accuracy_drop"] == 1.0


def test_per_class_summary_on_a_constructed_case() -> None:
    table = pd.DataFrame(
        {
            "dataset": ["d"] * 3,
            "model_type": ["m"] * 3,
            "bit_width": [4] * 3,
            "scheme": ["s"] * 3,
            "class": ["a", "b", "c"],
            "documents": [1, 1, 2],
            "accuracy_drop": [0.0, 0.3, 0.6],
            "float_score_variance": [1.0, 1.0, 1.0],
            "score_variance": [0.5, 0.5, 2.0],
        }
    )
    row = per_class_summary(table).iloc[0]
    assert row["worst_class"] == "c" and row["drop_range"] == pytest.approx(0.6) and row["mean_class_drop"] == pytest.approx(0.3)
    assert row["drop_std"] == pytest.approx(np.std([0.0, 0.3, 0.6]))
    assert row["score_variance"] == pytest.approx((0.5 + 0.5 + 4.0) / 4) and row["variance_ratio"] == pytest.approx(1.25)
