"""PTQ with Brevitas (issue 4): quantize, calibrate, GPFQ, quantized evaluation, checkpoints.

Invariants use tiny random models; the float-equivalence, GPFQ and pitfall tests use REAL tokenized
AG News rows (the ``small_ag_news`` project) and float models trained on them for a few seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.core.stats import AbsMax
from brevitas.quant_tensor import _unpack_quant_tensor
from conftest import train_briefly
from torch import nn

from lstm_ptq import analysis as A
from lstm_ptq import quantization as Q
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.evaluation import evaluate, float_scorer, score_split
from lstm_ptq.models import ModelConfig, build_model, generative_io, generative_label_losses
from lstm_ptq.preprocess import EncodedSplit, load_split, load_vocabulary
from lstm_ptq.quantization.fast_lstm import fast_observable
from lstm_ptq.quantization.modules import _is_quantizer_key
from lstm_ptq.settings import FinalLayerSettings, QuantizationSettings, load_params

REPO = Path(__file__).resolve().parents[1]
DIMS = {"discriminative": 32, "generative": 24}
STEPS = {"discriminative": 200, "generative": 80}


# --------------------------------------------------------------------------------------------------
# Fixtures: real rows, briefly trained float models
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def splits(small_ag_news: Path) -> dict[str, EncodedSplit]:
    tokenized = small_ag_news / "data" / "tokenized" / "ag_news"
    out = {name: load_split(tokenized, name) for name in ("train", "test")}
    out["vocab_size"] = len(load_vocabulary(tokenized).tokens)  # type: ignore[assignment]
    return out


def _train(model_type: str, splits: dict, seed: int = 0) -> nn.Module:
    torch.set_num_threads(1)  # module fixtures run before the autouse single-thread fixture
    torch.manual_seed(seed)
    dims = DIMS[model_type]
    model = build_model(ModelConfig(model_type, splits["vocab_size"], 4, dims, dims, 1, dims))
    return train_briefly(model, splits["train"], STEPS[model_type], 32 if model_type == "discriminative" else 16, 5e-3, seed)


@pytest.fixture(scope="module")
def float_models(splits: dict) -> dict[str, nn.Module]:
    return {model_type: _train(model_type, splits) for model_type in DIMS}


@pytest.fixture(scope="module")
def calib_batches(splits: dict) -> list[Q.Batch]:
    """100 training rows, label-free, as the calibration set."""
    return Q.token_batches(splits["train"], 50, np.arange(100))


@pytest.fixture(scope="module")
def test_batches(splits: dict) -> list[Q.Batch]:
    return Q.token_batches(splits["test"], 100, np.arange(100))


def calibrated(float_model: nn.Module, batches: list[Q.Batch], bit_width: int, **spec) -> Q.QuantModel:
    model = Q.quantize(float_model, Q.QuantSpec(bit_width=bit_width, **spec))
    Q.calibrate(model, batches)
    return model


def tiny(model_type: str, vocab: int = 50) -> nn.Module:
    torch.manual_seed(1)
    return build_model(ModelConfig(model_type, vocab, 3, 8, 6, 1, 5)).eval()


def tiny_batches(vocab: int = 50, n: int = 3) -> list[Q.Batch]:
    gen = torch.Generator().manual_seed(2)
    out = []
    for _ in range(n):
        lengths = torch.randint(1, 9, (6,), generator=gen)
        tokens = torch.randint(4, vocab, (6, 8), generator=gen) * (torch.arange(8) < lengths[:, None])
        out.append((tokens[:, : int(lengths.max())], lengths))
    return out


# --------------------------------------------------------------------------------------------------
# Spec and bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 17, 0, -3, 4.0, True, "8"])
def test_bit_width_outside_2_to_16_is_refused_by_name(bits) -> None:
    with pytest.raises(ParamError, match=r"quantization\.bit_width"):
        Q.QuantSpec(bit_width=bits)


@pytest.mark.parametrize("bits", [2, 16])
def test_bit_width_bounds_are_accepted(bits: int) -> None:
    assert Q.QuantSpec(bit_width=bits).bit_width == bits


def quantization_params(**quantization) -> dict:
    """params.yaml with keys of the ``quantization`` section replaced."""
    params = load_params(REPO / "params.yaml")
    params["quantization"].update(quantization)
    return params


@pytest.mark.parametrize(
    "key,value",
    [
        ("weight_scaling", "mse"),
        ("act_high_percentile", 0),
        ("act_high_percentile", 100.5),
        ("weight_high_percentile", "high"),
        ("act_narrow_range", "yes"),
        ("cell_state_bit_width", 1),
        ("cell_state_bit_width", None),
        ("cell_state_bit_width", "wide"),
        ("gate_bit_width", 17),
        ("gate_bit_width", 8.0),
    ],
)
def test_bad_quantization_params_name_the_key(key: str, value) -> None:
    params = quantization_params(**{key: value})
    with pytest.raises(ParamError, match=rf"quantization\.{key}"):
        QuantizationSettings.from_params(params)


def test_quantization_settings_read_the_section() -> None:
    params = quantization_params(
        act_high_percentile=99.9, weight_scaling="percentile", weight_high_percentile=99.5, cell_state_bit_width="same", gate_bit_width="same"
    )
    spec = QuantizationSettings.from_params(params).spec(3)
    assert (spec.bit_width, spec.act_high_percentile, spec.weight_scaling, spec.weight_high_percentile, spec.cell_state_bits, spec.gate_bits) == (
        3,
        99.9,
        "percentile",
        99.5,
        3,
        3,
    )
    assert spec == Q.QuantSpec(3, 99.9, "percentile", 99.5, params["quantization"]["act_narrow_range"], None, None)
    wide = QuantizationSettings.from_params(quantization_params(cell_state_bit_width=16, gate_bit_width=8)).spec(3)
    assert (wide.cell_state_bits, wide.gate_bits) == (16, 8)
    with pytest.raises(ParamError, match="quantization: missing"):
        QuantizationSettings.from_params({})
    with pytest.raises(ParamError, match=r"quantization\.bit_width: 17 is outside 2\.\.16"):
        QuantizationSettings.from_params(params).spec(17)
    for key in ("cell_state_bit_width", "gate_bit_width"):  # required: 'same' means the cell's bit width
        partial = quantization_params()
        del partial["quantization"][key]
        with pytest.raises(ParamError, match=rf"quantization\.{key}: missing from params\.yaml"):
            QuantizationSettings.from_params(partial)


def test_unknown_final_layer_algorithm_is_refused() -> None:
    with pytest.raises(ParamError, match=r"final_layer\.algorithm: unknown algorithm 'adaround'"):
        Q.check_algorithm("adaround", "final_layer.algorithm")
    params = load_params(REPO / "params.yaml")
    params["final_layer"]["algorithm"] = "adaround"
    with pytest.raises(ParamError, match=r"^final_layer\.algorithm: unknown algorithm 'adaround'"):
        FinalLayerSettings.from_params(params)


# --------------------------------------------------------------------------------------------------
# Construction: float weights, quantizers off == float
# --------------------------------------------------------------------------------------------------


def test_quant_lstm_without_quantizers_matches_nn_lstm() -> None:
    torch.manual_seed(0)
    reference = nn.LSTM(7, 5, batch_first=True)
    quant = qnn.QuantLSTM(
        7,
        5,
        batch_first=True,
        weight_quant=None,
        bias_quant=None,
        io_quant=None,
        gate_acc_quant=None,
        sigmoid_quant=None,
        tanh_quant=None,
        cell_state_quant=None,
    )
    result = quant.load_state_dict(reference.state_dict(), strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if not _is_quantizer_key(k)]
    x = torch.randn(4, 9, 7)
    torch.testing.assert_close(quant(x)[0], reference(x)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_quantizers_disabled_reproduce_the_float_model(model_type: str, float_models: dict, calib_batches: list, test_batches: list) -> None:
    """Every real parameter was copied, and disabling works inside QuantLSTM (its fast path ignores the flag)."""
    float_model = float_models[model_type]
    model = calibrated(float_model, calib_batches[:1], 3)  # calibrated 3-bit: quantizers would change everything
    with torch.no_grad():
        for tokens, lengths in test_batches:
            if model_type == "discriminative":
                with Q.quantizers_disabled(model):
                    got = model(tokens, lengths)
                torch.testing.assert_close(got, float_model(tokens, lengths), atol=1e-5, rtol=0)
                assert (model(tokens, lengths) - got).abs().max() > 1e-2  # and enabled again afterwards
            else:
                inputs, _, mask = generative_io(tokens, lengths)
                with Q.quantizers_disabled(model):
                    hidden = model.hidden_states(inputs)
                    rows = A.final_layer_rows(model, tokens, lengths)
                    logits = model.decoder(rows)
                torch.testing.assert_close(hidden[mask], float_model.hidden_states(inputs)[mask], atol=1e-5, rtol=0)
                float_rows = A.final_layer_rows(float_model, tokens, lengths, quantized_input=False)
                torch.testing.assert_close(logits, float_model.decoder(float_rows), atol=1e-5, rtol=0)


def test_float_weights_that_leave_a_parameter_unmatched_are_refused() -> None:
    model = tiny("discriminative")
    model.lstm = nn.LSTM(8, 6, batch_first=True, bias=False)  # a checkpoint without LSTM biases
    with pytest.raises(DataError, match=r"unmatched parameters \['lstm\.layers\.0\.0\.cell_gate_params\.bias'"):
        Q.quantize(model, Q.QuantSpec(bit_width=8))


def test_every_layer_is_quantized_and_biases_stay_float() -> None:
    model = Q.quantize(tiny("generative"), Q.QuantSpec(bit_width=4))
    assert isinstance(model.embedding, qnn.QuantEmbedding) and isinstance(model.label_embedding, qnn.QuantEmbedding)
    assert isinstance(model.lstm, qnn.QuantLSTM) and isinstance(model.decoder, qnn.QuantLinear)
    assert model.decoder.input_quant.is_quant_enabled and model.lstm_input_quant.act_quant.is_quant_enabled
    assert not model.decoder.bias_quant.is_quant_enabled
    assert all(not gate.bias_quant.is_quant_enabled for gate in model.lstm.modules() if isinstance(gate, type(model.lstm.layers[0][0].input_gate_params)))
    assert len(Q.activation_scales(model)) == 1 + 11 + 1  # LSTM input, the 11 QuantLSTM points, decoder input


# --------------------------------------------------------------------------------------------------
# Quantization grids
# --------------------------------------------------------------------------------------------------


def _weight_tensors(model: nn.Module):
    for name, module in model.named_modules():
        if hasattr(module, "quant_weight") and getattr(module, "weight_quant", None) is not None:
            yield name, module.quant_weight()


@pytest.mark.parametrize("bits", [2, 3, 8])
@pytest.mark.parametrize("scaling", ["minmax", "percentile"])
def test_quantized_weights_hold_at_most_2b_minus_1_levels(bits: int, scaling: str) -> None:
    """Percentile scaling at the 90th percentile clips, so a non-narrow grid would show 2^b levels."""
    model = Q.quantize(tiny("generative", vocab=200), Q.QuantSpec(bit_width=bits, weight_scaling=scaling, weight_high_percentile=90.0))
    names = []
    for name, qt in _weight_tensors(model):
        ints = qt.value / qt.scale
        torch.testing.assert_close(ints, ints.round(), atol=1e-3, rtol=0)
        levels = torch.unique(ints.round())
        assert len(levels) <= 2**bits - 1, name
        assert levels.abs().max() <= 2 ** (bits - 1) - 1, name
        names.append(name)
    assert len(names) == 2 + 8 + 1  # two embeddings, 4 gates x (input, hidden), decoder


def test_weight_scale_follows_the_chosen_statistic() -> None:
    model = tiny("discriminative")
    with torch.no_grad():
        model.classifier.weight[0, 0] = 5.0  # an outlier
    minmax = Q.quantize(model, Q.QuantSpec(bit_width=4))
    percentile = Q.quantize(model, Q.QuantSpec(bit_width=4, weight_scaling="percentile", weight_high_percentile=90.0))
    assert Q.final_layer_weight_scale(minmax) == pytest.approx(5.0 / 7)
    expected = torch.quantile(model.classifier.weight.detach().abs().flatten(), 0.9, interpolation="nearest").item() / 7
    assert Q.final_layer_weight_scale(percentile) == pytest.approx(expected, rel=0.05)
    assert Q.final_layer_weight_scale(percentile) < 0.5 * Q.final_layer_weight_scale(minmax)


@pytest.mark.parametrize("narrow,levels", [(True, (-3, 3)), (False, (-4, 3))])
def test_signed_activation_grid_narrow_range_decision(narrow: bool, levels: tuple[int, int]) -> None:
    """At 3 bits the pipeline's narrow grid is symmetric (tanh reaches +-1); the wide one is not."""
    model = Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=3, act_narrow_range=narrow))
    Q.calibrate(model, tiny_batches())
    quant = model.lstm_input_quant
    out = quant(torch.linspace(-50, 50, 1001))
    ints = torch.unique((out / quant.act_quant.scale()).round())
    assert (int(ints.min()), int(ints.max())) == levels


def _lstm_bit_widths(model: Q.QuantModel) -> dict[str, int]:
    cell = model.lstm.layers[0][0].cell
    names = ("cell_state_quant", "input_acc_quant", "input_sigmoid_quant", "cell_tanh_quant", "hidden_state_tanh_quant", "output_quant")
    return {name: int(getattr(cell, name).bit_width()) for name in names}


def test_lstm_internal_bit_widths_change_exactly_their_quantizers() -> None:
    """Cell state at 8 and gates at 16 bits with weights at 3: the named quantizers change, nothing else."""
    same = Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=3))
    assert set(_lstm_bit_widths(same).values()) == {3}
    wide = Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=3, cell_state_bit_width=8, gate_bit_width=16))
    assert _lstm_bit_widths(wide) == {
        "cell_state_quant": 8,
        "input_acc_quant": 16,
        "input_sigmoid_quant": 16,
        "cell_tanh_quant": 16,
        "hidden_state_tanh_quant": 16,
        "output_quant": 3,  # h_t stays at the cell's bit width
    }
    assert int(wide.lstm_input_quant.act_quant.bit_width()) == 3 and int(wide.classifier.input_quant.bit_width()) == 3
    for name, module in wide.named_modules():  # every weight on the 3-bit grid: at most 2^3 - 1 levels
        if hasattr(module, "quant_weight") and getattr(module, "weight_quant", None) is not None:
            levels = torch.unique(_unpack_quant_tensor(module.quant_weight()))
            assert len(levels) <= 7, f"{name}: {len(levels)} weight levels"
    Q.calibrate(wide, tiny_batches())
    tokens, lengths = tiny_batches()[0]
    with torch.no_grad():  # the quantizers are live: the wide model's hidden states differ from the 3-bit one's
        Q.calibrate(same, tiny_batches())
        assert not torch.equal(wide.lstm(wide.lstm_inputs(tokens))[0], same.lstm(same.lstm_inputs(tokens))[0])


# --------------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_calibration_sets_every_activation_scale_and_evaluation_refuses_without(model_type: str) -> None:
    model = Q.quantize(tiny(model_type), Q.QuantSpec(bit_width=4))
    tokens, lengths = tiny_batches()[0]
    before = Q.activation_scales(model)
    assert not Q.is_calibrated(model)
    evaluate_fn = Q.discriminative_logits if model_type == "discriminative" else Q.label_losses
    with pytest.raises(DataError, match="not calibrated"):
        evaluate_fn(model, tokens, lengths)
    with pytest.raises(DataError, match="not calibrated"):
        Q.quant_scorer(model)
    with pytest.raises(DataError, match="not calibrated"):
        Q.apply_gpfq(model, tiny_batches(), "gpfq")
    assert Q.calibrate(model, tiny_batches()) == 18
    after = Q.activation_scales(model)
    assert Q.is_calibrated(model) and set(after) == set(before)
    assert all(after[name] != pytest.approx(before[name]) for name in after), [n for n in after if after[n] == pytest.approx(before[n])]
    assert evaluate_fn(model, tokens, lengths).shape == (6, 3)
    with pytest.raises(DataError, match="already calibrated"):
        Q.calibrate(model, tiny_batches())


def test_calibration_is_repeatable_and_needs_data() -> None:
    first = Q.quantize(tiny("generative"), Q.QuantSpec(bit_width=5))
    second = Q.quantize(tiny("generative"), Q.QuantSpec(bit_width=5))
    Q.calibrate(first, tiny_batches())
    Q.calibrate(second, list(reversed(tiny_batches())))
    assert Q.activation_scales(first) == pytest.approx(Q.activation_scales(second), rel=1e-6)
    with pytest.raises(DataError, match="calibration set is empty"):
        Q.calibrate(Q.quantize(tiny("generative"), Q.QuantSpec(bit_width=5)), [])


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_ranges_of_one_calibration_serve_every_bit_width(model_type: str, float_models: dict, calib_batches: list, test_batches: list) -> None:
    """Calibration statistics come from a float pass: ranges observed at 8 bits calibrate a 3-bit
    model exactly as calibrating it directly would (same state dict, same outputs)."""
    observed = Q.quantize(float_models[model_type], Q.QuantSpec(bit_width=8))
    Q.calibrate(observed, calib_batches)
    ranges = Q.activation_ranges(observed)
    direct = Q.quantize(float_models[model_type], Q.QuantSpec(bit_width=3))
    Q.calibrate(direct, calib_batches)
    transferred = Q.quantize(float_models[model_type], Q.QuantSpec(bit_width=3))
    Q.set_activation_ranges(transferred, ranges, "ranges.npz")
    assert Q.is_calibrated(transferred)
    expected, got = Q.quantized_state_dict(direct), Q.quantized_state_dict(transferred)
    assert set(expected) == set(got) and all(torch.equal(expected[k], got[k]) for k in expected)
    assert Q.activation_scales(transferred) == Q.activation_scales(direct)
    assert Q.activation_scales(transferred) != Q.activation_scales(observed)  # the scale itself depends on the bit width
    scorer = Q.discriminative_logits if model_type == "discriminative" else Q.label_losses
    for tokens, lengths in test_batches:
        assert torch.equal(scorer(direct, tokens, lengths), scorer(transferred, tokens, lengths))


def test_bad_activation_ranges_are_refused_by_name() -> None:
    observed = Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=8))
    Q.calibrate(observed, tiny_batches())
    ranges = Q.activation_ranges(observed)
    fresh = lambda: Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=4))  # noqa: E731
    name = next(iter(ranges))
    with pytest.raises(DataError, match=r"r\.npz: .*missing \[" + re.escape(repr(name))):
        Q.set_activation_ranges(fresh(), {k: v for k, v in ranges.items() if k != name}, "r.npz")
    with pytest.raises(DataError, match=r"r\.npz: range .* is not a positive finite number"):
        Q.set_activation_ranges(fresh(), {**ranges, name: torch.tensor(float("nan"))}, "r.npz")
    with pytest.raises(DataError, match=r"r\.npz: range .* has 2 values, expected 1"):
        Q.set_activation_ranges(fresh(), {**ranges, name: torch.ones(2)}, "r.npz")
    with pytest.raises(DataError, match="already calibrated"):
        Q.set_activation_ranges(observed, ranges, "r.npz")
    with pytest.raises(DataError, match="not calibrated"):
        Q.activation_ranges(fresh())


def test_generative_calibration_sees_the_decoder_input_of_every_label(float_models: dict, calib_batches: list) -> None:
    """The decoder input quantizer's range covers l_y of every label, as inference feeds it."""
    model = Q.quantize(float_models["generative"], Q.QuantSpec(bit_width=8))
    seen = []
    handle = model.decoder.input_quant.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
    Q.calibrate(model, calib_batches[:1])
    handle.remove()
    tokens, lengths = calib_batches[0]
    n_real = int((lengths + 1).sum())
    assert seen == [torch.Size([1, 4 * n_real, DIMS["generative"] * 2])]


def test_decoder_feeding_gives_the_decoder_one_label_per_calibration_position(float_models: dict, splits: dict) -> None:
    """calibration.decoder_feeding true_label / predicted_label: each document's own label only, in
    calibration and in both GPFQ passes; the discriminative model refuses fed labels."""
    train = splits["train"]
    rows = np.arange(100)
    fed = Q.token_batches(train, 50, rows, feed_labels=train.labels)
    plain = Q.token_batches(train, 50, rows)
    assert [b[:2] for b in fed].__repr__() == plain.__repr__()  # the same documents in the same order
    model = Q.quantize(float_models["generative"], Q.QuantSpec(bit_width=4))
    seen = []
    handle = model.decoder.input_quant.register_forward_hook(lambda m, args, out: seen.append(args[0][0].detach().clone()))
    Q.calibrate(model, fed[:1])
    handle.remove()
    tokens, lengths, labels = fed[0]
    n_real = int((lengths + 1).sum())
    assert seen[0].shape == (n_real, DIMS["generative"] * 2)  # one label per real position, not 4 x n_real
    document = torch.repeat_interleave(torch.arange(len(lengths)), lengths + 1)
    label_part = seen[0][:, DIMS["generative"] :]
    assert torch.equal(label_part, float_models["generative"].label_embedding.weight.detach()[labels[document]])  # calibration is a float pass
    assert len(torch.unique(labels)) > 1  # the batch really mixes labels
    Q.calibrate(Q.quantize(float_models["generative"], Q.QuantSpec(bit_width=4)), plain[:1])  # label-free still works
    model = Q.quantize(float_models["generative"], Q.QuantSpec(bit_width=4))
    Q.calibrate(model, fed)
    report = Q.apply_gpfq(model, fed, "gpfq")
    assert report["changed_weight_fraction"] > 0
    discriminative = Q.quantize(float_models["discriminative"], Q.QuantSpec(bit_width=4))
    with pytest.raises(ValueError, match="decoder_feeding applies to the generative model"):
        Q.calibrate(discriminative, fed[:1])


def test_separate_lstm_input_quantizer_avoids_the_shared_io_pitfall(float_models: dict, calib_batches: list, test_batches: list) -> None:
    """QuantLSTM's io_quant would quantize x_t with h_t's scale and clip the embeddings."""
    float_model = float_models["discriminative"]

    def relative_error(model: nn.Module) -> float:
        with torch.no_grad():
            pairs = [(model(tokens, lengths), float_model(tokens, lengths)) for tokens, lengths in test_batches]
        return float(torch.cat([(a - b).flatten() for a, b in pairs]).norm() / torch.cat([b.flatten() for _, b in pairs]).norm())

    ours = calibrated(float_model, calib_batches, 8)
    shared = Q.quantize(float_model, Q.QuantSpec(bit_width=8))
    shared.lstm_input_quant = nn.Identity()
    shared.lstm.layers[0][0].quantize_output_only = False
    # a layout the fast observer does not cover is calibrated by Brevitas' own observers
    assert fast_observable(ours.lstm) and not fast_observable(shared.lstm)
    Q.calibrate(shared, calib_batches)
    assert relative_error(ours) < 0.1
    assert relative_error(shared) > 3 * relative_error(ours)


# --------------------------------------------------------------------------------------------------
# Quantized evaluation
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [3, 6])
def test_generative_fast_scoring_matches_per_label_path_when_quantized(bits: int, float_models: dict, calib_batches: list, test_batches: list) -> None:
    model = calibrated(float_models["generative"], calib_batches, bits)
    Q.apply_gpfq(model, calib_batches[:2], "gpfq")
    for tokens, lengths in test_batches[:1]:
        fast = Q.label_losses(model, tokens, lengths)
        naive = Q.label_losses_per_label(model, tokens, lengths)
        torch.testing.assert_close(fast, naive, rtol=2e-5, atol=2e-4)
        assert torch.equal(fast.argmin(dim=1), naive.argmin(dim=1))
        float_losses = generative_label_losses(float_models["generative"], tokens, lengths)
        assert (fast - float_losses).abs().max() > 1e-2  # the quantized model really is quantized


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_eight_bit_model_keeps_float_accuracy(model_type: str, float_models: dict, calib_batches: list, splits: dict) -> None:
    float_model = float_models[model_type]
    model = calibrated(float_model, calib_batches, 8)
    test = splits["test"]
    quant_eval = evaluate(score_split(Q.quant_scorer(model), test), test.labels)
    float_eval = evaluate(score_split(float_scorer(float_model), test), test.labels)
    assert float_eval.accuracy > 0.4  # the float model learned something
    assert abs(quant_eval.accuracy - float_eval.accuracy) <= 0.03
    assert (quant_eval.predictions == float_eval.predictions).mean() >= 0.95


# --------------------------------------------------------------------------------------------------
# GPFQ
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_gpfq_changes_the_final_layer_and_lowers_its_output_error(model_type: str, float_models: dict, calib_batches: list) -> None:
    bits = 3
    float_model = float_models[model_type]
    model = calibrated(float_model, calib_batches, bits)
    layer = model.final_layer
    rounded = _unpack_quant_tensor(layer.quant_weight()).clone()
    scale = Q.final_layer_weight_scale(model)
    grams = A.final_layer_grams(model, float_model, calib_batches)
    error_rounding = A.final_layer_output_error(model, float_model, calib_batches)
    assert A.final_layer_output_error(model, float_model, grams) == error_rounding
    info = Q.apply_gpfq(model, calib_batches, "gpfq")
    refined = layer.quant_weight()
    error_gpfq = A.final_layer_output_error(model, float_model, calib_batches)
    # GPFQ leaves the final layer's input rows as they were: the grams of before give the error of after
    after = A.final_layer_grams(model, float_model, calib_batches)
    assert all(torch.equal(getattr(after, name), getattr(grams, name)) for name in ("xx", "xq", "qq"))
    assert A.final_layer_output_error(model, float_model, grams) == error_gpfq
    assert info["changed_weight_fraction"] > 0.1
    assert (refined.value != rounded).float().mean() > 0.1
    assert error_gpfq < 0.9 * error_rounding
    # the scale did not move although GPFQ rewrote the float weights
    assert float(refined.scale) == scale
    ints = (refined.value / refined.scale).round()
    assert len(torch.unique(ints)) <= 2**bits - 1 and ints.abs().max() <= 3
    assert not torch.equal(layer.weight, layer.weight_orig)
    assert float(AbsMax(None)(layer.weight.detach())) / 3 != pytest.approx(scale, rel=1e-3)  # a recomputed scale would move
    with pytest.raises(DataError, match="already refined with gpfq"):
        Q.apply_gpfq(model, calib_batches, "gpfq")
    with pytest.raises(DataError, match="after gpfq"):
        Q.calibrate(model, calib_batches)


def test_gpfq_reference_pass_is_the_float_model(float_models: dict, calib_batches: list) -> None:
    """Brevitas' reference pass ran QuantLSTM quantized; ours is the float model (equation 22's X)."""
    float_model = float_models["discriminative"]
    model = calibrated(float_model, calib_batches, 4)
    inputs: list[torch.Tensor] = []
    handle = model.classifier.input_quant.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach().clone()))
    Q.apply_gpfq(model, calib_batches[:1], "gpfq")
    handle.remove()
    tokens, lengths = calib_batches[0]
    quant_pass, reference_pass = inputs[0], inputs[1]
    with torch.no_grad():
        float_hidden = float_model.final_hidden(tokens, lengths)
    torch.testing.assert_close(reference_pass, float_hidden, atol=1e-5, rtol=0)
    assert (quant_pass - float_hidden).abs().max() > 1e-2


def test_gpfq_feeds_the_generative_decoder_3d_rows_for_every_label(float_models: dict, calib_batches: list) -> None:
    model = calibrated(float_models["generative"], calib_batches, 4)
    shapes = []
    handle = model.decoder.input_quant.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    Q.apply_gpfq(model, calib_batches[:1], "gpfq")
    handle.remove()
    n_real = int((calib_batches[0][1] + 1).sum())
    assert shapes == [(1, 4 * n_real, 2 * DIMS["generative"])] * 2  # the quantized pass, then the float reference


def test_gpfq_does_not_collapse_low_bit_accuracy(float_models: dict, calib_batches: list, splits: dict) -> None:
    """With a recomputed weight scale GPFQ rounded most weights to zero (docs/quantization.md)."""
    float_model = float_models["discriminative"]
    test = splits["test"]
    rounding = calibrated(float_model, calib_batches, 3)
    refined = calibrated(float_model, calib_batches, 3)
    Q.apply_gpfq(refined, calib_batches, "gpfq")
    accuracy = {name: evaluate(score_split(Q.quant_scorer(m), test), test.labels).accuracy for name, m in (("rounding", rounding), ("gpfq", refined))}
    assert accuracy["gpfq"] >= accuracy["rounding"] - 0.05, accuracy
    zero = (refined.classifier.quant_weight().value == 0).float().mean()
    assert zero < 0.5


@pytest.mark.parametrize("algorithm", ["gptq", "qronos", "none"])
def test_other_final_layer_algorithms(algorithm: str, float_models: dict, calib_batches: list) -> None:
    float_model = float_models["discriminative"]
    model = calibrated(float_model, calib_batches, 3)
    before = model.classifier.quant_weight().value.clone()
    error_rounding = A.final_layer_output_error(model, float_model, calib_batches)
    info = Q.apply_gpfq(model, calib_batches, algorithm)
    changed = (model.classifier.quant_weight().value != before).float().mean()
    assert model.final_layer_algorithm == algorithm and info["weight_scale"] == Q.final_layer_weight_scale(model)
    if algorithm == "none":
        assert changed == 0
    else:
        assert changed > 0
    if algorithm == "qronos":  # like GPFQ it targets the float layer input (equation 22); GPTQ the quantized one
        assert A.final_layer_output_error(model, float_model, calib_batches) < error_rounding


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def test_quantized_checkpoint_round_trip_drops_weight_orig(float_models: dict, calib_batches: list, test_batches: list, tmp_path: Path) -> None:
    float_model = float_models["discriminative"]
    model = calibrated(float_model, calib_batches, 4)
    Q.apply_gpfq(model, calib_batches, "gpfq")
    raw = model.state_dict()
    assert "classifier.weight_orig" in raw
    with pytest.raises(RuntimeError, match="weight_orig"):  # the pitfall: a strict load into a fresh model
        Q.build_quant_model(model.config, model.spec).load_state_dict(raw)
    path = tmp_path / "q.pt"
    Q.save_quantized(model, path)
    saved = torch.load(path, weights_only=True)
    assert "classifier.weight_orig" not in saved["state_dict"] and saved["quant_spec"]["bit_width"] == 4
    loaded = Q.load_quantized(path, model.config, model.spec)
    assert loaded.final_layer_algorithm == "gpfq" and Q.is_calibrated(loaded)
    for tokens, lengths in test_batches:
        assert torch.equal(Q.discriminative_logits(loaded, tokens, lengths), Q.discriminative_logits(model, tokens, lengths))
    saved["state_dict"] = raw  # a checkpoint that kept weight_orig still loads
    torch.save(saved, path)
    again = Q.load_quantized(path, model.config, model.spec)
    tokens, lengths = test_batches[0]
    assert torch.equal(Q.discriminative_logits(again, tokens, lengths), Q.discriminative_logits(model, tokens, lengths))


def test_generative_checkpoint_round_trip(tmp_path: Path) -> None:
    model = Q.quantize(tiny("generative"), Q.QuantSpec(bit_width=3))
    Q.calibrate(model, tiny_batches())
    Q.apply_gpfq(model, tiny_batches(), "gpfq")
    Q.save_quantized(model, tmp_path / "g.pt")
    loaded = Q.load_quantized(tmp_path / "g.pt", model.config, model.spec)
    tokens, lengths = tiny_batches()[1]
    assert torch.equal(Q.label_losses(loaded, tokens, lengths), Q.label_losses(model, tokens, lengths))


def test_checkpoint_from_another_bit_width_or_setting_is_refused(tmp_path: Path) -> None:
    model = Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=4))
    Q.calibrate(model, tiny_batches())
    path = tmp_path / "models" / "cell.pt"
    Q.save_quantized(model, path)
    with pytest.raises(DataError, match=rf"{path}: quantized at bit_width=4, but quantization\.bit_width=8"):
        Q.load_quantized(path, model.config, Q.QuantSpec(bit_width=8))
    with pytest.raises(DataError, match=rf"{path}: .*quantization\.weight_scaling"):
        Q.load_quantized(path, model.config, Q.QuantSpec(bit_width=4, weight_scaling="percentile"))
    other = ModelConfig("discriminative", 50, 3, 8, 7, 1, 5)
    with pytest.raises(DataError, match=rf"{path}: model config"):
        Q.load_quantized(path, other, model.spec)
    with pytest.raises(DataError, match="checkpoint not found"):
        Q.load_quantized(tmp_path / "missing.pt", model.config, model.spec)
    float_file = tmp_path / "float.pt"
    torch.save(tiny("discriminative").state_dict(), float_file)
    with pytest.raises(DataError, match=rf"{float_file}: not a quantized checkpoint"):
        Q.load_quantized(float_file, model.config, model.spec)
    with pytest.raises(DataError, match="not calibrated"):
        Q.save_quantized(Q.quantize(tiny("discriminative"), Q.QuantSpec(bit_width=4)), tmp_path / "u.pt")


# --------------------------------------------------------------------------------------------------
# Hidden-state statistics
# --------------------------------------------------------------------------------------------------


def test_state_trace_matches_the_full_sequence_pass(float_models: dict, calib_batches: list) -> None:
    float_model = float_models["discriminative"]
    model = calibrated(float_model, calib_batches[:1], 3)
    tokens, lengths = calib_batches[1]
    for m in (float_model, model):
        hidden, cells, mask = A.lstm_state_trace(m, tokens, lengths)
        with torch.no_grad():
            full = m.lstm(m.lstm_inputs(tokens) if hasattr(m, "lstm_inputs") else m.embedding(tokens))[0]
        torch.testing.assert_close(hidden[mask], full[mask], atol=1e-6, rtol=0)
    packed = nn.utils.rnn.pack_padded_sequence(float_model.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, (_, c_last) = float_model.lstm(packed)
    _, cells, _ = A.lstm_state_trace(float_model, tokens, lengths)
    torch.testing.assert_close(cells[torch.arange(len(lengths)), lengths - 1], c_last[0], atol=1e-5, rtol=0)


def test_hidden_state_stats_show_low_bit_zeros(float_models: dict, calib_batches: list) -> None:
    float_model = float_models["generative"]
    float_stats = A.hidden_state_stats(float_model, calib_batches[:2])
    low = A.hidden_state_stats(calibrated(float_model, calib_batches[:1], 2), calib_batches[:2])
    assert float_stats["zero_h_fraction"] == 0.0 and low["zero_h_fraction"] > 0.05
    assert float_stats["positions"] == int((calib_batches[0][1] + 1).sum() + (calib_batches[1][1] + 1).sum())
    assert 0 < float_stats["abs_c_p50"] <= float_stats["abs_c_p99"] <= float_stats["abs_c_max"]


# --------------------------------------------------------------------------------------------------
# TorchScript: the pipeline runs Brevitas with BREVITAS_JIT=1, the tests without (conftest.py)
# --------------------------------------------------------------------------------------------------

_JIT_CELL = """
import sys, torch
from lstm_ptq import quantization as Q
from lstm_ptq.models import ModelConfig, build_model
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(2)
batches = []
for _ in range(3):
    lengths = torch.randint(1, 13, (16,), generator=gen)
    tokens = torch.randint(4, 80, (16, 12), generator=gen) * (torch.arange(12) < lengths[:, None])
    batches.append((tokens[:, : int(lengths.max())], lengths))
scores = {}
for model_type in ("discriminative", "generative"):
    torch.manual_seed(1)
    model = Q.quantize(build_model(ModelConfig(model_type, 80, 3, 12, 10, 1, 8)).eval(), Q.QuantSpec(bit_width=3))
    Q.calibrate(model, batches)
    Q.apply_gpfq(model, batches, "gpfq")
    scores[model_type] = torch.cat([model.class_scores(t, n) for t, n in batches])
torch.save(scores, sys.argv[1])
"""


def test_brevitas_jit_gives_bit_identical_results(tmp_path: Path) -> None:
    """Quantize, calibrate, GPFQ and score in fresh processes with BREVITAS_JIT=0 and =1 (read at import)."""
    scores = {}
    for jit in ("0", "1"):
        out = tmp_path / f"jit{jit}.pt"
        env = {**os.environ, "BREVITAS_JIT": jit, "PYTHONPATH": str(REPO / "src")}
        subprocess.run([sys.executable, "-c", _JIT_CELL, str(out)], check=True, env=env, cwd=tmp_path)
        scores[jit] = torch.load(out, weights_only=True)
    for model_type in ("discriminative", "generative"):
        assert torch.equal(scores["0"][model_type], scores["1"][model_type]), model_type
        assert scores["0"][model_type].std() > 0
