"""params.yaml, parsed once at the stage boundary into frozen, validated settings: one class per section.

:func:`load_params` checks the whole file against :data:`SCHEMA` before any stage reads it: an unknown
or misspelt key is an error naming the key and the closest valid one. Each ``from_params`` reads only
the keys its section's consumers need and names the dotted key in every error, e.g.
``tokenize.max_length: -3 must be >= 2``. dvc.yaml declares, per stage, exactly the keys its
``read_settings`` reads (``scripts/generate_dvc_yaml.py`` derives them with :class:`ReadRecorder`).
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .datasets import DATASETS
from .errors import ParamError
from .paths import ProjectPaths

SOURCES = ("bundled", "remote")
MODEL_TYPE_NAMES = ("discriminative", "generative")  # models.MODEL_TYPES without importing torch (a test keeps them equal)
MIN_BIT_WIDTH, MAX_BIT_WIDTH = 2, 16  # here, not in quantization.spec: checking a bit width imports no torch or Brevitas
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# --------------------------------------------------------------------------------------------------
# The shape of params.yaml
# --------------------------------------------------------------------------------------------------

DATASET_KEY = "<dataset>"  # a key that stands for every dataset name
MODEL_TYPE_KEY = "<model_type>"  # a key that stands for every model type name
TREE_KEY = "<tree>"  # a key that stands for any tree name (TREE_NAME)
TREE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TRAIN_KEYS = ("batch_size", "learning_rate", "max_epochs", "patience", "grad_clip", "num_threads", "bucket_batches", "train_accuracy_rows")

# Every valid key; a nested dict is a section, None a value.
SCHEMA: dict[str, Any] = {
    "seed": None,
    "grid": dict.fromkeys(
        (
            "datasets",
            "model_types",
            "bit_widths",
            "calibration_schemes",
            "noise_models",
            "noise_quantized_schemes",
            "noise_quantized_noise_models",
            "noise_trained_datasets",
        )
    ),
    "download": {
        DATASET_KEY: {
            "source": None,
            "bundled_extra_train": None,
            "bundled_test_fraction": None,
            "remote": dict.fromkeys(("url", "sha256", "timeout_s")),
        }
    },
    "tokenize": dict.fromkeys(("lowercase", "max_vocab_size", "min_freq", "max_length", "valid_fraction")),
    "model": dict.fromkeys(("embedding_dim", "hidden_size", "num_layers", "label_embedding_dim")),
    "train": {**dict.fromkeys(_TRAIN_KEYS), MODEL_TYPE_KEY: dict.fromkeys(_TRAIN_KEYS)},
    "evaluate": dict.fromkeys(("batch_size", "use_log_prior")),
    "noise": dict.fromkeys(("levels",)),
    "quantization": dict.fromkeys(
        ("act_high_percentile", "weight_scaling", "weight_high_percentile", "act_narrow_range", "cell_state_bit_width", "gate_bit_width")
    ),
    "calibration": dict.fromkeys(("fraction", "batch_size", "decoder_feeding")),
    "final_layer": dict.fromkeys(("algorithm", "batch_size", "documents", "error_batches")),
    "noise_quantized": dict.fromkeys(("test_documents",)),
    "noise_training": dict.fromkeys(("noise_model", "level", "eval_level")),
    "analysis": dict.fromkeys(("schemes", "ks_sample_size", "documents", "kde_bit_width", "kde_points")),
}
# A further project tree (TreeSettings): the stages from ``rerun_from`` on, rerun under variants/<name> with
# ``params`` laid over the top level (any key above, ``grid`` included, e.g. another seed or bit widths).
SCHEMA["trees"] = {TREE_KEY: {"rerun_from": None, "params": dict(SCHEMA)}}
_WILDCARDS = {DATASET_KEY: tuple(DATASETS), MODEL_TYPE_KEY: MODEL_TYPE_NAMES, TREE_KEY: None}  # None: any tree name


def _closest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; expected one of {valid}"


def _matches(wildcard: str, key: Any) -> bool:
    names = _WILDCARDS[wildcard]
    if names is None:
        return isinstance(key, str) and TREE_NAME.match(key) is not None
    return key in names


def validate_params(params: Any, schema: Mapping[str, Any] = SCHEMA, where: str = "") -> None:
    """Every key of ``params`` is in ``schema``: an unknown one is a :class:`ParamError` naming it."""
    if not isinstance(params, Mapping):
        raise ParamError(f"{where or 'params.yaml'}: {params!r} is not a mapping of keys")
    for key, value in params.items():
        name = f"{where}.{key}" if where else str(key)
        sub = schema.get(key, "unknown") if isinstance(key, str) and key not in _WILDCARDS else "unknown"
        if sub == "unknown":
            wildcard = next((w for w in _WILDCARDS if w in schema and _matches(w, key)), None)
            if wildcard is None:
                if TREE_KEY in schema:
                    raise ParamError(f"{name}: {key!r} is not a tree name (lower-case letters, digits and _, starting with a letter)")
                valid = [k for k in schema if k not in _WILDCARDS] + [n for w, names in _WILDCARDS.items() if w in schema for n in names or ()]
                raise ParamError(f"{name}: unknown key{_closest(str(key), valid)}")
            sub = schema[wildcard]
        if isinstance(sub, dict):
            if value is None:  # an empty section, e.g. `train.discriminative:` with no overrides
                continue
            validate_params(value, sub, name)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The parameter file, validated as a whole against :data:`SCHEMA`."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamError(f"{path}: parameter file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ParamError(f"{path}: not valid YAML ({exc})") from None
    except (ValueError, LookupError, AttributeError) as exc:  # PyYAML's constructors on a malformed scalar: `2025-13-45`, `!!int x`
        raise ParamError(f"{path}: not valid YAML (a value: {type(exc).__name__}: {exc})") from None
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of sections at the top level")
    try:
        validate_params(params)
    except ParamError as exc:
        raise ParamError(f"{path}: {exc}") from None
    return params


# --------------------------------------------------------------------------------------------------
# Which keys a stage reads
# --------------------------------------------------------------------------------------------------


class ReadRecorder(Mapping[str, Any]):
    """A read-only view of params that records the dotted keys read through it.

    Reading a value, or testing that it is there, records its key; iterating a section or asking for a
    missing key records the whole section (its keys decide the result). ``reads`` is shared by the
    views of nested sections.
    """

    def __init__(self, node: Mapping[str, Any], where: str = "", reads: set[str] | None = None) -> None:
        self._node, self._where = node, where
        self.reads: set[str] = set() if reads is None else reads

    def _path(self, key: str) -> str:
        return f"{self._where}.{key}" if self._where else key

    def _whole(self) -> None:
        if self._where:
            self.reads.add(self._where)

    def __getitem__(self, key: str) -> Any:
        if key not in self._node:
            self._whole()
            raise KeyError(key)
        value = self._node[key]
        if isinstance(value, Mapping):
            return ReadRecorder(value, self._path(key), self.reads)
        self.reads.add(self._path(key))
        return value

    def __contains__(self, key: object) -> bool:
        if key not in self._node:
            self._whole()  # adding the key would change the answer
            return False
        if not isinstance(self._node[key], Mapping):  # a section is recorded by what is read from it
            self.reads.add(self._path(str(key)))
        return True

    def __iter__(self) -> Iterator[str]:
        self._whole()
        return iter(self._node)

    def __len__(self) -> int:
        self._whole()
        return len(self._node)


def minimal_reads(reads: set[str]) -> list[str]:
    """The recorded keys without those inside a section that was read whole, sorted."""
    return sorted(k for k in reads if not any(k.startswith(other + ".") for other in reads))


# --------------------------------------------------------------------------------------------------
# Typed access
# --------------------------------------------------------------------------------------------------


def section(params: Mapping[str, Any], key: str) -> Any:
    """Look up a dotted key, naming the first missing part."""
    node: Any = params
    walked = []
    for part in key.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            raise ParamError(f"{'.'.join(walked)}: missing from params.yaml")
        node = node[part]
    return node


def get_typed(node: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``node[key]`` checked against ``kind``; ``where`` is the dotted path of ``node`` ("" at the top level)."""
    name = f"{where}.{key}" if where else key
    if not isinstance(node, Mapping) or key not in node:
        raise ParamError(f"{name}: missing from params.yaml")
    value = node[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ParamError(f"{name}: {value!r} is not a {' or '.join(k.__name__ for k in kinds)}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds):
        raise ParamError(f"{name}: {value!r} is not a {' or '.join(k.__name__ for k in kinds)}")
    return value


def _optional_int(node: Mapping[str, Any], key: str, where: str, what: str) -> int | None:
    """An int >= 1 or null (``what`` says what null means)."""
    value = get_typed(node, key, (int, type(None)), where)
    if value is not None and value < 1:
        raise ParamError(f"{where}.{key}: {value} must be >= 1, or null for {what}")
    return value


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ParamError(f"{name}: {value!r} must be >= 1")
    return value


def get_seed(params: Mapping[str, Any]) -> int:
    """The top-level ``seed``; numpy's generators refuse negative seeds."""
    seed = get_typed(params, "seed", int, "")
    if seed < 0:
        raise ParamError(f"seed: {seed} must be >= 0")
    return seed


def check_dataset(name: str, where: str = "dataset") -> str:
    if name not in DATASETS:
        raise ParamError(f"{where}: unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    return name


def check_model_type(name: str, where: str = "model_type") -> str:
    if name not in MODEL_TYPE_NAMES:
        raise ParamError(f"{where}: unknown model {name!r}; expected one of {list(MODEL_TYPE_NAMES)}")
    return name


def check_fraction(value: float, where: str, *, allow_one: bool = False) -> float:
    upper_ok = value <= 1.0 if allow_one else value < 1.0
    if not (value > 0.0 and upper_ok):
        bound = "(0, 1]" if allow_one else "(0, 1)"
        raise ParamError(f"{where}: {value!r} is not in {bound}")
    return value


def _name_list(node: Mapping[str, Any], key: str, where: str, check: Any) -> tuple[str, ...]:
    """A non-empty list of distinct names, each passed through ``check(name, where_of_item)``."""
    values = get_typed(node, key, list, where)
    if not values:
        raise ParamError(f"{where}.{key}: empty; expected at least one entry")
    names = tuple(check(v, f"{where}.{key}[{i}]") for i, v in enumerate(values))
    if len(set(names)) != len(names):
        raise ParamError(f"{where}.{key}: {list(values)!r} repeats an entry")
    return names


def check_bit_width(value: Any, where: str) -> int:
    """An integer bit width (a numpy integer included) in MIN_BIT_WIDTH..MAX_BIT_WIDTH."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParamError(f"{where}: {value!r} is not an integer bit width")
    if not MIN_BIT_WIDTH <= int(value) <= MAX_BIT_WIDTH:
        raise ParamError(f"{where}: {value!r} is outside {MIN_BIT_WIDTH}..{MAX_BIT_WIDTH}")
    return int(value)


def check_scheme(name: Any, where: str) -> str:
    from .calibration import check_scheme

    if not isinstance(name, str):
        raise ParamError(f"{where}: {name!r} is not a calibration scheme name")
    try:
        return check_scheme(name)
    except ParamError as exc:
        raise ParamError(f"{where}: {exc}") from None


def check_noise_model(name: Any, where: str) -> str:
    from .noise import noise_model

    return noise_model(name, where).name


# --------------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridSettings:
    """The ``grid`` section: the study's axes (dvc.yaml's matrix stages fan out over them)."""

    datasets: tuple[str, ...]
    model_types: tuple[str, ...]
    bit_widths: tuple[int, ...]
    calibration_schemes: tuple[str, ...]
    noise_models: tuple[str, ...]
    noise_quantized_schemes: tuple[str, ...]
    noise_quantized_noise_models: tuple[str, ...]
    noise_trained_datasets: tuple[str, ...]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GridSettings:
        where = "grid"
        node = section(params, where)
        out = cls(
            datasets=_name_list(node, "datasets", where, check_dataset),
            model_types=_name_list(node, "model_types", where, check_model_type),
            bit_widths=_name_list(node, "bit_widths", where, check_bit_width),
            calibration_schemes=_name_list(node, "calibration_schemes", where, check_scheme),
            noise_models=_name_list(node, "noise_models", where, check_noise_model),
            noise_quantized_schemes=_name_list(node, "noise_quantized_schemes", where, check_scheme),
            noise_quantized_noise_models=_name_list(node, "noise_quantized_noise_models", where, check_noise_model),
            noise_trained_datasets=_name_list(node, "noise_trained_datasets", where, check_dataset),
        )
        for key, values, within, what in (
            ("noise_quantized_schemes", out.noise_quantized_schemes, out.calibration_schemes, "calibration_schemes, so it has no calibrated models"),
            ("noise_quantized_noise_models", out.noise_quantized_noise_models, out.noise_models, "noise_models, so it has no noisy test sets"),
            ("noise_trained_datasets", out.noise_trained_datasets, out.datasets, "datasets, so it has no clean-trained model to compare with"),
        ):
            for i, value in enumerate(values):
                if value not in within:
                    raise ParamError(f"{where}.{key}[{i}]: {value!r} is not in {where}.{what}")
        return out


@dataclass(frozen=True)
class RemoteSource:
    url: str
    sha256: str
    timeout_s: float

    @classmethod
    def from_params(cls, node: Mapping[str, Any], where: str) -> RemoteSource:
        url = get_typed(node, "url", str, where)
        if not re.match(r"^(https?|file)://", url):
            raise ParamError(f"{where}.url: {url!r} is not an http(s):// or file:// URL")
        sha256 = get_typed(node, "sha256", str, where).lower()
        if not _SHA256.fullmatch(sha256):
            raise ParamError(f"{where}.sha256: {sha256!r} is not 64 hexadecimal digits")
        timeout = get_typed(node, "timeout_s", float, where)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ParamError(f"{where}.timeout_s: {timeout!r} must be a finite number > 0")
        return cls(url, sha256, timeout)


@dataclass(frozen=True)
class DownloadSettings:
    """``download.<dataset>`` plus the top-level ``seed`` (the bundled DBPedia test split is drawn with it)."""

    dataset: str
    source: str
    remote: RemoteSource | None
    bundled_test_fraction: float | None
    seed: int
    bundled_extra_train: bool = False  # append the bundled title-less extra training rows (data/bundled/PROVENANCE.md)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> DownloadSettings:
        check_dataset(dataset)
        where = f"download.{dataset}"
        node = section(params, where)
        present = set(node)  # optional keys: the stage depends on the whole section
        source = get_typed(node, "source", str, where)
        if source not in SOURCES:
            raise ParamError(f"{where}.source: unknown source {source!r}; expected one of {list(SOURCES)}")
        remote = RemoteSource.from_params(section(params, f"{where}.remote"), f"{where}.remote") if source == "remote" else None
        test_fraction = None
        if "bundled_test_fraction" in present:
            test_fraction = check_fraction(get_typed(node, "bundled_test_fraction", float, where), f"{where}.bundled_test_fraction")
        extra = get_typed(node, "bundled_extra_train", bool, where) if "bundled_extra_train" in present else False
        return cls(dataset, source, remote, test_fraction, get_seed(params), extra)


@dataclass(frozen=True)
class TokenizeSettings:
    lowercase: bool
    max_vocab_size: int
    min_freq: int
    max_length: int
    valid_fraction: float
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TokenizeSettings:
        where = "tokenize"
        node = section(params, where)
        out = cls(
            lowercase=get_typed(node, "lowercase", bool, where),
            max_vocab_size=get_typed(node, "max_vocab_size", int, where),
            min_freq=get_typed(node, "min_freq", int, where),
            max_length=get_typed(node, "max_length", int, where),
            valid_fraction=check_fraction(get_typed(node, "valid_fraction", float, where), f"{where}.valid_fraction"),
            seed=get_seed(params),
        )
        if out.max_vocab_size <= 4:
            raise ParamError(f"{where}.max_vocab_size: {out.max_vocab_size} must be > 4 (the special tokens)")
        if out.min_freq < 1:
            raise ParamError(f"{where}.min_freq: {out.min_freq} must be >= 1")
        if out.max_length < 2:
            raise ParamError(f"{where}.max_length: {out.max_length} must be >= 2")
        return out


@dataclass(frozen=True)
class TextSettings:
    """The two ``tokenize`` keys that noisy text needs to go through the clean text's pipeline."""

    lowercase: bool
    max_length: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TextSettings:
        node = section(params, "tokenize")
        max_length = get_typed(node, "max_length", int, "tokenize")
        if max_length < 2:
            raise ParamError(f"tokenize.max_length: {max_length} must be >= 2")
        return cls(get_typed(node, "lowercase", bool, "tokenize"), max_length)


@dataclass(frozen=True)
class ModelSettings:
    """The ``model`` section (paper section 4.3.1): the layer sizes of both classifiers."""

    embedding_dim: int
    hidden_size: int
    num_layers: int
    label_embedding_dim: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ModelSettings:
        where = "model"
        node = section(params, where)
        return cls(
            *(_positive(get_typed(node, key, int, where), f"{where}.{key}") for key in ("embedding_dim", "hidden_size", "num_layers", "label_embedding_dim"))
        )


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section with the ``train.<model_type>`` overrides applied, plus the top-level ``seed``."""

    batch_size: int
    learning_rate: float
    max_epochs: int
    patience: int
    grad_clip: float
    seed: int
    num_threads: int  # tracked, unlike LSTM_PTQ_THREADS: training bytes may depend on it (lstm_ptq.runtime)
    bucket_batches: int  # batches per length bucket (1 = plain shuffling)
    train_accuracy_rows: int  # training rows scored each epoch for the train-accuracy curve

    @classmethod
    def from_params(cls, params: Mapping[str, Any], model_type: str) -> TrainSettings:
        check_model_type(model_type)
        node = section(params, "train")
        override = node.get(model_type) or {}
        if not isinstance(override, Mapping):
            raise ParamError(f"train.{model_type}: {override!r} is not a mapping of per-model overrides")
        overridden = set(override)  # read whole: adding an override key changes the stage

        def where(key: str) -> str:
            return f"train.{model_type}.{key}" if key in overridden else f"train.{key}"

        values = {}
        for key in _TRAIN_KEYS:  # every shared key is read, overridden or not, so the stage's keys never depend on values
            kind = float if key in ("learning_rate", "grad_clip") else int
            values[key] = get_typed(node, key, kind, "train")
            if key in overridden:  # an overridden key is reported under its own path, e.g. train.generative.max_epochs
                values[key] = get_typed(override, key, kind, f"train.{model_type}")
        out = cls(seed=get_seed(params), **values)
        for name in ("batch_size", "max_epochs", "patience", "num_threads", "bucket_batches"):
            if getattr(out, name) < 1:
                raise ParamError(f"{where(name)}: {getattr(out, name)!r} must be >= 1")
        for name in ("learning_rate", "grad_clip"):
            if getattr(out, name) <= 0:
                raise ParamError(f"{where(name)}: {getattr(out, name)!r} must be > 0")
        if out.train_accuracy_rows < 0:
            raise ParamError(f"{where('train_accuracy_rows')}: {out.train_accuracy_rows} must be >= 0")
        return out


@dataclass(frozen=True)
class EvaluateSettings:
    batch_size: int
    use_log_prior: bool = False  # equation 14 (False) or equation 6 with the training label prior (True)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, with_prior: bool = False) -> EvaluateSettings:
        """``with_prior``: also read ``use_log_prior`` (only the float evaluation applies it)."""
        where = "evaluate"
        node = section(params, where)
        batch_size = _positive(get_typed(node, "batch_size", int, where), f"{where}.batch_size")
        return cls(batch_size, get_typed(node, "use_log_prior", bool, where) if with_prior else False)


@dataclass(frozen=True)
class NoiseSettings:
    """The ``noise`` section (section 4.3.3): the epsilon levels every noise curve is measured at, plus
    the top-level ``seed`` that draws the corruption."""

    levels: tuple[float, ...]
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NoiseSettings:
        from .noise import check_noise_levels

        where = "noise"
        node = section(params, where)
        return cls(check_noise_levels(get_typed(node, "levels", list, where), f"{where}.levels"), get_seed(params))


def _width_or_same(node: Mapping[str, Any], key: str, where: str) -> int | None:
    """A bit width of the LSTM's inside: ``same`` (None: the cell's bit width) or an integer width."""
    value = get_typed(node, key, (int, str, type(None)), where)
    if value == "same":
        return None
    if not isinstance(value, int):
        raise ParamError(f"{where}.{key}: {value!r} is neither 'same' (the cell's bit width) nor a bit width")
    return check_bit_width(value, f"{where}.{key}")


@dataclass(frozen=True)
class QuantizationSettings:
    """The ``quantization`` section (sections 4.2.1, 4.3.2): everything of a cell's quantizers but its bit width."""

    act_high_percentile: float
    weight_scaling: str
    weight_high_percentile: float
    act_narrow_range: bool
    cell_state_bit_width: int | None  # None ('same'): the cell's bit width
    gate_bit_width: int | None  # None ('same'): the cell's bit width

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QuantizationSettings:
        where = "quantization"
        node = section(params, where)
        out = cls(
            act_high_percentile=get_typed(node, "act_high_percentile", float, where),
            weight_scaling=get_typed(node, "weight_scaling", str, where),
            weight_high_percentile=get_typed(node, "weight_high_percentile", float, where),
            act_narrow_range=get_typed(node, "act_narrow_range", bool, where),
            cell_state_bit_width=_width_or_same(node, "cell_state_bit_width", where),
            gate_bit_width=_width_or_same(node, "gate_bit_width", where),
        )
        out.spec(8)  # the spec validates every value, naming its key
        return out

    def spec(self, bit_width: int):  # -> QuantSpec; Brevitas is imported only by the stages that quantize
        from .quantization.spec import QuantSpec

        return QuantSpec(
            bit_width=bit_width,
            act_high_percentile=self.act_high_percentile,
            weight_scaling=self.weight_scaling,
            weight_high_percentile=self.weight_high_percentile,
            act_narrow_range=self.act_narrow_range,
            cell_state_bit_width=self.cell_state_bit_width,
            gate_bit_width=self.gate_bit_width,
        )


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``calibration`` section (sections 4.2.2, 5.3, 5.4, 6.1): the calibration sets' common size as a
    fraction of the training split, and the documents per observation batch (activation percentiles are
    averaged over batches x time steps)."""

    fraction: float
    batch_size: int
    decoder_feeding: str  # how the generative decoder is fed: calibration.DECODER_FEEDINGS

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CalibrationSettings:
        from .calibration import check_decoder_feeding

        where = "calibration"
        node = section(params, where)
        return cls(
            fraction=check_fraction(get_typed(node, "fraction", float, where), f"{where}.fraction", allow_one=True),
            batch_size=_positive(get_typed(node, "batch_size", int, where), f"{where}.batch_size"),
            decoder_feeding=check_decoder_feeding(get_typed(node, "decoder_feeding", str, where), f"{where}.decoder_feeding"),
        )


@dataclass(frozen=True)
class FinalLayerSettings:
    """The ``final_layer`` section (section 4.2.3): the algorithm that refines the final linear layer after
    calibration (GPFQ in the paper), the evenly spaced calibration documents it runs on (None: all of
    them, the paper), its forward-pass batch, and the calibration batches its output error is measured on."""

    algorithm: str
    batch_size: int
    documents: int | None
    error_batches: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FinalLayerSettings:
        from .quantization.refine import check_algorithm

        where = "final_layer"
        node = section(params, where)
        out = cls(
            algorithm=check_algorithm(get_typed(node, "algorithm", str, where), f"{where}.algorithm"),
            batch_size=_positive(get_typed(node, "batch_size", int, where), f"{where}.batch_size"),
            documents=_optional_int(node, "documents", where, "the whole calibration set"),
            error_batches=get_typed(node, "error_batches", int, where),
        )
        if out.error_batches < 0:
            raise ParamError(f"{where}.error_batches: {out.error_batches} must be >= 0")
        return out


@dataclass(frozen=True)
class NoiseQuantizedSettings:
    """The ``noise_quantized`` section (Figure 10): how many evenly spaced test documents each calibrated
    cell is scored on at every noise level (the same documents at every level); None = the whole split."""

    test_documents: int | None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NoiseQuantizedSettings:
        return cls(_optional_int(section(params, "noise_quantized"), "test_documents", "noise_quantized", "the whole test split"))


@dataclass(frozen=True)
class NoiseTrainingSettings:
    """The ``noise_training`` section (section 7, Figure 16): the noise model and level the generative model
    is trained with and, for Figure 16 only, its test noise level (one of ``noise.levels``)."""

    noise_model: str
    level: float
    eval_level: float | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, with_eval_level: bool = False) -> NoiseTrainingSettings:
        from .noise import check_noise_level

        where = "noise_training"
        node = section(params, where)
        name = check_noise_model(get_typed(node, "noise_model", str, where), f"{where}.noise_model")
        built = get_typed(section(params, "grid"), "noise_models", list, "grid")
        if name not in built:
            raise ParamError(f"{where}.noise_model: {name!r} is not in grid.noise_models {built!r}, so it has no noisy test sets")
        level = check_noise_level(get_typed(node, "level", (int, float), where), f"{where}.level")
        if not with_eval_level:
            return cls(name, level)
        eval_level = check_noise_level(get_typed(node, "eval_level", (int, float), where), f"{where}.eval_level")
        levels = NoiseSettings.from_params(params).levels
        if eval_level not in levels:
            raise ParamError(f"{where}.eval_level: {eval_level} is not in noise.levels {list(levels)!r}")
        return cls(name, level, eval_level)


@dataclass(frozen=True)
class AnalysisSettings:
    """The ``analysis`` section (paper section 6, Figures 12-15): the calibration schemes whose calibrated
    models are compared (the paper: class-conditional and class-unconditional), the most values one KS
    sample keeps (a larger one is subsampled without replacement, seeded by the top-level ``seed``), the
    evenly spaced test documents of the common input set (None: the whole split), and Figure 15's bit width
    and the points of its density curves."""

    schemes: tuple[str, ...]
    ks_sample_size: int
    documents: int | None
    kde_bit_width: int
    kde_points: int
    grid_schemes: tuple[str, ...] = ()  # grid.calibration_schemes: Figure 13 compares every calibration set

    @property
    def figure13_schemes(self) -> tuple[str, ...]:
        """The calibration sets Figure 13 compares with ``schemes[0]``'s: the other compared schemes, then
        every other scheme of the grid (the calibration sets only, so an imbalanced set shows as imbalanced)."""
        return (*self.schemes[1:], *(s for s in self.grid_schemes if s not in self.schemes))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AnalysisSettings:
        where = "analysis"
        node = section(params, where)
        grid = section(params, "grid")
        built_schemes = get_typed(grid, "calibration_schemes", list, "grid")
        built_widths = get_typed(grid, "bit_widths", list, "grid")
        out = cls(
            schemes=_name_list(node, "schemes", where, check_scheme),
            ks_sample_size=get_typed(node, "ks_sample_size", int, where),
            documents=_optional_int(node, "documents", where, "the whole test split"),
            kde_bit_width=check_bit_width(get_typed(node, "kde_bit_width", int, where), f"{where}.kde_bit_width"),
            kde_points=get_typed(node, "kde_points", int, where),
            grid_schemes=tuple(built_schemes),
        )
        for i, scheme in enumerate(out.schemes):
            if scheme not in built_schemes:
                raise ParamError(f"{where}.schemes[{i}]: {scheme!r} is not in grid.calibration_schemes, so it has no calibrated models")
        if out.kde_bit_width not in built_widths:
            raise ParamError(f"{where}.kde_bit_width: {out.kde_bit_width} is not in grid.bit_widths {built_widths!r}")
        if out.ks_sample_size < 100:
            raise ParamError(f"{where}.ks_sample_size: {out.ks_sample_size} must be >= 100 (a KS p-value needs samples)")
        if out.kde_points < 16:
            raise ParamError(f"{where}.kde_points: {out.kde_points} must be >= 16")
        return out


# --------------------------------------------------------------------------------------------------
# Project trees: the same stages rerun with some settings changed
# --------------------------------------------------------------------------------------------------

TREES_ROOT = Path("variants")
TREE_STARTS = ("train", "calibration_sets")  # train: new float models; calibration_sets: the main tree's float models
RESERVED_TREE_NAMES = ("noise_trained",)  # paths.VARIANT_ROOT, the section 7 tree with its own data


class TreeView(Mapping[str, Any]):
    """params as the stages of a tree read them: ``override`` (the tree's ``params``) laid over ``base`` key
    by key; a section in both is merged, anything else in ``override`` replaces. Built over
    :class:`ReadRecorder` views, every key read is recorded where its value came from."""

    def __init__(self, base: Mapping[str, Any], override: Mapping[str, Any]) -> None:
        self._base, self._override = base, override

    def __getitem__(self, key: str) -> Any:
        if key in self._override:
            value = self._override[key]
            if isinstance(value, Mapping) and key in self._base and isinstance(self._base[key], Mapping):
                return TreeView(self._base[key], value)
            return value
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._override or key in self._base

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._base, *self._override]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class TreeSettings:
    """``trees.<name>``: a further project tree under variants/<name> that reruns the stages from
    ``rerun_from`` on (``train``: new float models, e.g. another seed; ``calibration_sets``: the main tree's
    float models, e.g. another LSTM precision) with the tree's ``params`` laid over params.yaml. The data,
    and with ``calibration_sets`` the float models, come from the main tree."""

    name: str
    rerun_from: str

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str) -> TreeSettings:
        where = f"trees.{name}"
        if not TREE_NAME.match(name) or name in RESERVED_TREE_NAMES:
            raise ParamError(f"{where}: {name!r} is not a usable tree name (lower-case letters, digits and _; not {list(RESERVED_TREE_NAMES)})")
        node = section(params, where)
        rerun_from = get_typed(node, "rerun_from", str, where)
        if rerun_from not in TREE_STARTS:
            raise ParamError(f"{where}.rerun_from: {rerun_from!r} is not one of {list(TREE_STARTS)}")
        return cls(name, rerun_from)

    def view(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """params as this tree's stages read them."""
        node = section(params, f"trees.{self.name}")
        override = node["params"] if "params" in node else None  # not `or {}`: testing a section's truth reads it whole
        if override is None:
            override = {}
        if not isinstance(override, Mapping):
            raise ParamError(f"trees.{self.name}.params: {override!r} is not a mapping of settings")
        return TreeView(params, override)

    def paths(self, main: Path = Path(".")) -> ProjectPaths:
        """The tree's paths: its own outputs under variants/<name>, its inputs from the ``main`` tree."""
        return ProjectPaths(main / TREES_ROOT / self.name, data_root=main, float_root=main if self.rerun_from == "calibration_sets" else None)
