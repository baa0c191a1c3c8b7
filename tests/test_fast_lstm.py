"""The fast quantized LSTM pass against Brevitas' QuantLSTM, the reference: equal bit for bit.

Models are trained for a few hundred steps on real AG News rows, so cell states grow large enough
for the low-bit collapse of docs/quantization.md (pitfall 7) to appear; every grid bit width, the
cell-state override, both model types and both thread counts are compared on the whole small test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from brevitas.core.stats.stats_op import AbsPercentile
from brevitas.graph.gpfq import GPFQ, gpfq_mode
from conftest import train_briefly
from torch import nn

from lstm_ptq import analysis as A
from lstm_ptq import quantization as Q
from lstm_ptq.errors import DataError
from lstm_ptq.evaluation import score_split
from lstm_ptq.models import ModelConfig, build_model
from lstm_ptq.preprocess import EncodedSplit, load_split, load_vocabulary
from lstm_ptq.quantization.activations import FinalLayerDriver
from lstm_ptq.quantization.fast_lstm import FastQuantLSTM, ObservingFastLSTM, _kth_smallest, using_fast_lstm
from lstm_ptq.quantization.refine import FINAL_LAYER_ALGORITHMS, IncrementalGPFQ, _run_gpfq_family

BIT_WIDTHS = [8, 7, 6, 5, 4, 3, 2]


@pytest.fixture(scope="module")
def splits(small_ag_news: Path) -> dict:
    tokenized = small_ag_news / "data" / "tokenized" / "ag_news"
    out: dict = {name: load_split(tokenized, name) for name in ("train", "test")}
    out["vocab_size"] = len(load_vocabulary(tokenized).tokens)
    return out


def _trained(model_type: str, splits: dict) -> nn.Module:
    torch.set_num_threads(1)  # module fixtures run before the autouse single-thread fixture
    torch.manual_seed(0)
    model = build_model(ModelConfig(model_type, splits["vocab_size"], 4, 24, 24, 1, 24))
    return train_briefly(model, splits["train"], 200 if model_type == "discriminative" else 60, 32, 1e-2, 0)


@pytest.fixture(scope="module")
def float_models(splits: dict) -> dict[str, nn.Module]:
    return {model_type: _trained(model_type, splits) for model_type in ("discriminative", "generative")}


@pytest.fixture(scope="module")
def ranges(float_models: dict, splits: dict) -> dict[str, dict]:
    """One calibration per model type: its activation ranges serve every bit width (docs/quantization.md)."""
    out = {}
    for model_type, float_model in float_models.items():
        model = Q.quantize(float_model, Q.QuantSpec(bit_width=8))
        Q.calibrate(model, Q.token_batches(splits["train"], 64, np.arange(256)))
        out[model_type] = Q.activation_ranges(model)
    return out


def _calibrated(float_model: nn.Module, ranges: dict, bit_width: int, cell_state_bit_width: int | None) -> Q.QuantModel:
    model = Q.quantize(float_model, Q.QuantSpec(bit_width=bit_width, cell_state_bit_width=cell_state_bit_width))
    Q.set_activation_ranges(model, ranges[model.model_type], "calibration of the test")
    return model


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
@pytest.mark.parametrize("cell_state_bit_width", [None, 16])
def test_fast_lstm_equals_brevitas_at_every_bit_width(
    model_type: str, cell_state_bit_width: int | None, float_models: dict, ranges: dict, splits: dict
) -> None:
    test: EncodedSplit = splits["test"]
    zero_states = 0
    for bit_width in BIT_WIDTHS:
        model = _calibrated(float_models[model_type], ranges, bit_width, cell_state_bit_width)
        tokens = torch.as_tensor(test.tokens.astype(np.int64))
        with torch.no_grad():
            inputs = model.lstm_inputs(tokens)
            reference, _ = model.lstm(inputs)
            fast, _ = FastQuantLSTM(model.lstm)(inputs)
        assert torch.equal(fast, reference), f"{bit_width} bits: hidden states differ by up to {(fast - reference).abs().max():.3g}"
        zero_states += int((reference == 0).all(dim=-1).sum())

        scored = test.subset(np.arange(100))
        reference_scores = score_split(model.class_scores, scored, 100)
        with using_fast_lstm(model):
            fast_scores = score_split(model.class_scores, scored, 100)
        assert isinstance(model.lstm, Q.FlagAwareQuantLSTM), "the Brevitas LSTM was not restored"
        assert np.array_equal(fast_scores, reference_scores), f"{bit_width} bits: class scores differ"
    if cell_state_bit_width is None:  # the comparison covered the collapsed, all-zero hidden states too
        assert zero_states > 0


def test_fast_lstm_equals_brevitas_with_two_threads(float_models: dict, ranges: dict, splits: dict) -> None:
    model = _calibrated(float_models["discriminative"], ranges, 4, None)
    tokens = torch.as_tensor(splits["test"].tokens.astype(np.int64))
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            inputs = model.lstm_inputs(tokens)
            assert torch.equal(FastQuantLSTM(model.lstm)(inputs)[0], model.lstm(inputs)[0])
    finally:
        torch.set_num_threads(1)


def test_fast_lstm_quantizes_every_point(float_models: dict, ranges: dict, splits: dict) -> None:
    """The fast pass is not a float LSTM: without its quantizers (Brevitas with every quantizer off) it differs."""
    model = _calibrated(float_models["discriminative"], ranges, 3, None)
    tokens = torch.as_tensor(splits["test"].tokens[:50].astype(np.int64))
    with torch.no_grad():
        inputs = model.lstm_inputs(tokens)
        fast, _ = FastQuantLSTM(model.lstm)(inputs)
        with Q.quantizers_disabled(model):
            unquantized, _ = model.lstm(inputs)
    assert (fast - unquantized).abs().max() > 1e-2
    scale = model.lstm.layers[0][0].cell.output_quant.scale()
    assert torch.equal(torch.round(fast / scale) * scale, fast), "hidden states are not on the output quantizer's grid"


def test_fast_lstm_blocks_nest_and_restore_the_brevitas_lstm(float_models: dict, ranges: dict) -> None:
    model = _calibrated(float_models["discriminative"], ranges, 4, None)
    original = model.lstm
    with using_fast_lstm(model):
        fast = model.lstm
        assert isinstance(fast, FastQuantLSTM)
        with using_fast_lstm(model):
            assert model.lstm is fast
        assert model.lstm is fast
    assert model.lstm is original


def test_fast_lstm_refuses_an_uncalibrated_model(float_models: dict) -> None:
    model = Q.quantize(float_models["discriminative"], Q.QuantSpec(bit_width=4))
    with pytest.raises(DataError, match="not calibrated"):
        with using_fast_lstm(model):
            pass


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_hidden_state_stats_are_the_same_on_the_fast_pass(model_type: str, float_models: dict, ranges: dict, splits: dict) -> None:
    """The cells' LSTM statistics (zero h_t fraction, |h| and |c| percentiles) come out of one fast pass."""
    batches = Q.token_batches(splits["test"], 100, np.arange(200))
    for bit_width in (4, 3):
        model = _calibrated(float_models[model_type], ranges, bit_width, None)
        reference = A.hidden_state_stats(model, batches)  # Brevitas, one step at a time
        with using_fast_lstm(model):
            fast = A.hidden_state_stats(model, batches)
        assert fast == reference, bit_width


def test_fast_lstm_with_quantizers_off_equals_brevitas_float_pass(float_models: dict, ranges: dict, splits: dict) -> None:
    """GPFQ's reference pass disables every quantizer: the fast LSTM then runs Brevitas' float recurrence."""
    model = _calibrated(float_models["generative"], ranges, 3, None)
    tokens = torch.as_tensor(splits["test"].tokens[:200].astype(np.int64))
    with using_fast_lstm(model), Q.quantizers_disabled(model), torch.no_grad():
        fast, _ = model.lstm(model.lstm_inputs(tokens))
    with Q.quantizers_disabled(model), torch.no_grad():
        reference, _ = model.lstm(model.lstm_inputs(tokens))
    assert torch.equal(fast, reference)


def _brevitas_gpfq(act_order: bool = False):
    return lambda m: gpfq_mode(m, use_quant_activations=True, act_order=act_order, algorithm_impl=GPFQ)


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_gpfq_on_the_fast_lstm_gives_the_brevitas_weights(model_type: str, float_models: dict, ranges: dict, splits: dict) -> None:
    """apply_gpfq (GPFQ's two passes on the fast LSTM, its quantized history kept: IncrementalGPFQ) refines
    the final layer to the weights of Brevitas' own GPFQ on Brevitas' passes."""
    batches = Q.token_batches(splits["train"], 64, np.arange(192))
    assert FINAL_LAYER_ALGORITHMS["gpfq"](nn.Sequential()).algorithm_impl is IncrementalGPFQ
    for bit_width in (4, 3):
        fast = _calibrated(float_models[model_type], ranges, bit_width, None)
        Q.apply_gpfq(fast, batches, "gpfq")
        reference = _calibrated(float_models[model_type], ranges, bit_width, None)
        _run_gpfq_family(FinalLayerDriver(reference).eval(), batches, _brevitas_gpfq())
        with torch.no_grad():
            refined, expected = fast.final_layer.quant_weight().value, reference.final_layer.quant_weight().value
        assert torch.equal(refined, expected), bit_width
        assert not torch.equal(refined, _calibrated(float_models[model_type], ranges, bit_width, None).final_layer.quant_weight().value)


@pytest.mark.parametrize("act_order", [False, True])
def test_incremental_gpfq_equals_brevitas_gpfq(act_order: bool, float_models: dict, ranges: dict, splits: dict) -> None:
    """IncrementalGPFQ quantizes each column once instead of the whole matrix at every step: the same
    refined float and quantized weights as Brevitas' GPFQ, bit for bit, at every bit width, in column
    order and in activation order (a permuted greedy path)."""
    batches = Q.token_batches(splits["train"], 64, np.arange(128))
    for bit_width in (8, 5, 3):
        refined = {}
        for impl in (IncrementalGPFQ, GPFQ):
            model = _calibrated(float_models["generative"], ranges, bit_width, None)
            mode = lambda m, impl=impl: gpfq_mode(m, use_quant_activations=True, act_order=act_order, algorithm_impl=impl)  # noqa: E731
            _run_gpfq_family(FinalLayerDriver(model).eval(), batches, mode)
            with torch.no_grad():
                refined[impl] = (model.final_layer.weight.detach().clone(), model.final_layer.quant_weight().value)
        assert torch.equal(refined[IncrementalGPFQ][0], refined[GPFQ][0]), bit_width
        assert torch.equal(refined[IncrementalGPFQ][1], refined[GPFQ][1]), bit_width


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
@pytest.mark.parametrize("percentile", [99.99, 99.999, 75.0])
def test_fast_observer_gives_brevitas_calibration_bit_for_bit(model_type: str, percentile: float, float_models: dict, splits: dict) -> None:
    """Calibration with the LSTM's observers fed from one float pass leaves the state Brevitas' per-step
    observers leave: every scale, statistic buffer and counter (75.0 takes the row-wise selection)."""
    train: EncodedSplit = splits["train"]
    feeds = [None] if model_type == "discriminative" else [None, train.labels]
    for feed in feeds:
        batches = Q.token_batches(train, 48, np.arange(300), feed)
        models = {}
        for fast in (True, False):
            model = Q.quantize(float_models[model_type], Q.QuantSpec(bit_width=8, act_high_percentile=percentile))
            assert Q.calibrate(model, batches, fast_observer=fast) == 300
            models[fast] = model
        fast_state, reference_state = models[True].state_dict(), models[False].state_dict()
        assert fast_state.keys() == reference_state.keys()
        differing = [name for name in reference_state if not torch.equal(fast_state[name], reference_state[name])]
        assert differing == []
        reference_scalings = [m for m in models[False].modules() if isinstance(m, ParameterFromRuntimeStatsScaling)]
        fast_scalings = [m for m in models[True].modules() if isinstance(m, ParameterFromRuntimeStatsScaling)]
        assert [m.counter for m in fast_scalings] == [m.counter for m in reference_scalings]
        # the swaps are undone: Brevitas' own LSTM and statistics modules stay in the model
        assert not isinstance(models[True].lstm, ObservingFastLSTM)
        assert all(type(m.stats.stats_impl) is AbsPercentile for m in fast_scalings)
        with torch.no_grad():
            tokens = torch.as_tensor(splits["test"].tokens[:64].astype(np.int64))
            lengths = torch.as_tensor(splits["test"].lengths[:64].astype(np.int64))
            assert torch.equal(models[True].class_scores(tokens, lengths), models[False].class_scores(tokens, lengths))


@pytest.mark.parametrize("width", [7, 100, 6400, 300_000])
def test_kth_smallest_selects_what_kthvalue_selects(width: int) -> None:
    """Every path of the fast percentile (short top-k, chunked top-k, row-wise selection) picks the
    element torch.kthvalue picks, ties included."""
    generator = torch.Generator().manual_seed(width)
    rows = torch.cat([torch.randn(3, width, generator=generator).abs(), torch.randint(0, 5, (2, width), generator=generator).float()])
    for q in (99.99, 99.9, 90.0, 50.5):
        k = int(np.floor(0.01 * q * width + 0.5))
        if k < 1:
            continue
        assert torch.equal(_kth_smallest(rows, k), torch.kthvalue(rows, k, dim=1).values), (width, q)
