"""Post-training quantization of the two LSTM classifiers with Brevitas (paper sections 4.2 and 4.3.2).

The PTQ flow of Figure 1 in three calls::

    qmodel = quantize(float_model, QuantSpec(bit_width=4))  # 4.2.1: weights quantized, act quantizers inserted
    calibrate(qmodel, batches)                               # 4.2.2: activation scales from unlabeled data
    apply_gpfq(qmodel, batches, "gpfq")                      # 4.2.3: GPFQ on the final linear layer only
    with using_fast_lstm(qmodel): ...                              # evaluation: the same numbers, faster

``batches`` are label-free ``(tokens, lengths)`` pairs (section 4.3.2). How each Brevitas pitfall is
handled, and which test checks it: docs/quantization.md.
"""

# First: Brevitas is imported through brevitas_loader (without TorchDynamo, a stale C++ extension lock
# cleared). Modules outside the package that use Brevitas import this package before it.
from . import brevitas_loader  # noqa: F401

# isort: split

# Brevitas runs without TorchScript (its default; BREVITAS_JIT=1 opts in): compiling a model's quantizers
# costs more than it saves once evaluation and GPFQ run on the fast LSTM (docs/quantization.md, pitfall 9).
from .activations import (
    Batch,
    activation_ranges,
    activation_scales,
    calibrate,
    is_calibrated,
    require_calibrated,
    set_activation_ranges,
    token_batches,
)
from .checkpoints import CHECKPOINT_FORMAT, load_quantized, quantized_state_dict, save_quantized
from .fast_lstm import FastQuantLSTM, using_fast_lstm
from .modules import (
    FlagAwareQuantLSTM,
    QuantDiscriminativeLSTM,
    QuantGenerativeLSTM,
    QuantModel,
    build_quant_model,
    init_weight_scales,
    quantize,
    quantizers_disabled,
)
from .refine import FINAL_LAYER_ALGORITHMS, apply_gpfq, check_algorithm, final_layer_weight_scale
from .scoring import discriminative_logits, label_losses, label_losses_per_label, quant_decoder_parts, quant_scorer
from .spec import MAX_BIT_WIDTH, MIN_BIT_WIDTH, WEIGHT_SCALINGS, QuantSpec

__all__ = [
    "Batch",
    "CHECKPOINT_FORMAT",
    "FINAL_LAYER_ALGORITHMS",
    "FastQuantLSTM",
    "FlagAwareQuantLSTM",
    "MAX_BIT_WIDTH",
    "MIN_BIT_WIDTH",
    "QuantDiscriminativeLSTM",
    "QuantGenerativeLSTM",
    "QuantModel",
    "QuantSpec",
    "WEIGHT_SCALINGS",
    "activation_ranges",
    "activation_scales",
    "apply_gpfq",
    "build_quant_model",
    "calibrate",
    "check_algorithm",
    "discriminative_logits",
    "final_layer_weight_scale",
    "init_weight_scales",
    "is_calibrated",
    "label_losses",
    "label_losses_per_label",
    "load_quantized",
    "quant_decoder_parts",
    "quant_scorer",
    "quantize",
    "quantized_state_dict",
    "quantizers_disabled",
    "require_calibrated",
    "save_quantized",
    "set_activation_ranges",
    "token_batches",
    "using_fast_lstm",
]
