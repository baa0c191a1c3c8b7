"""How a cell is quantized (sections 4.2.1, 4.3.2): the bit width and the scale statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from brevitas.core.stats import StatsOp

from ..errors import ParamError
from ..settings import MAX_BIT_WIDTH as MAX_BIT_WIDTH
from ..settings import MIN_BIT_WIDTH as MIN_BIT_WIDTH
from ..settings import check_bit_width as check_bit_width

# Symmetric per-tensor weight statistic (section 4.2.1): "minmax" is max|W| (equation 17 for a
# symmetric range), "percentile" the weight_high_percentile-th percentile of |W|.
WEIGHT_SCALINGS: dict[str, StatsOp] = {"minmax": StatsOp.MAX, "percentile": StatsOp.PERCENTILE}


def _check_percentile(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"{where}: {value!r} is not a number")
    if not 50.0 < float(value) <= 100.0:
        raise ParamError(f"{where}: {value!r} is not a high percentile in (50, 100]")
    return float(value)


@dataclass(frozen=True)
class QuantSpec:
    """How one cell is quantized: the stage's bit width for weights AND activations (section 4.3.2)."""

    bit_width: int
    act_high_percentile: float = 99.99  # activation range: percentile of |a| (section 4.3.2)
    weight_scaling: str = "minmax"  # "minmax" | "percentile" (section 4.2.1)
    weight_high_percentile: float = 99.99  # used when weight_scaling == "percentile"
    act_narrow_range: bool = True  # signed activations on -(2^(b-1)-1) .. 2^(b-1)-1
    cell_state_bit_width: int | None = None  # the LSTM's cell-state quantizer (f*c, i*g, c_t); None: bit_width
    gate_bit_width: int | None = None  # the LSTM's gate pre-activations and sigmoid/tanh outputs; None: bit_width

    def __post_init__(self) -> None:
        where = "quantization"
        object.__setattr__(self, "bit_width", check_bit_width(self.bit_width, f"{where}.bit_width"))
        object.__setattr__(self, "act_high_percentile", _check_percentile(self.act_high_percentile, f"{where}.act_high_percentile"))
        object.__setattr__(self, "weight_high_percentile", _check_percentile(self.weight_high_percentile, f"{where}.weight_high_percentile"))
        if self.weight_scaling not in WEIGHT_SCALINGS:
            raise ParamError(f"{where}.weight_scaling: unknown scaling {self.weight_scaling!r}; expected one of {list(WEIGHT_SCALINGS)}")
        if not isinstance(self.act_narrow_range, bool):
            raise ParamError(f"{where}.act_narrow_range: {self.act_narrow_range!r} is not a bool")
        for key in ("cell_state_bit_width", "gate_bit_width"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, check_bit_width(getattr(self, key), f"{where}.{key}"))

    @property
    def cell_state_bits(self) -> int:
        return self.bit_width if self.cell_state_bit_width is None else self.cell_state_bit_width

    @property
    def gate_bits(self) -> int:
        return self.bit_width if self.gate_bit_width is None else self.gate_bit_width

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
