"""Property-based tests (hypothesis) of the code that reads untrusted input: the release CSV parser, the
text cleaner, the ``.npz`` loader with the tokenized split's checks on top of it, and the params.yaml
validator. Each either returns what it promises or raises the project's own error naming the file, line
or key; no other exception type gets out.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import operator
import re
import string
import sys
import unicodedata
import zipfile
from collections.abc import Mapping
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from lstm_ptq.artifacts import arrays_to_bytes, load_arrays
from lstm_ptq.datasets import DATASETS, Document, parse_release_csv
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.preprocess import EncodedSplit, load_split
from lstm_ptq.settings import DATASET_KEY, MODEL_TYPE_KEY, MODEL_TYPE_NAMES, SCHEMA, TREE_KEY, TREE_NAME, load_params, validate_params
from lstm_ptq.text import clean_text

REPO = Path(__file__).resolve().parents[1]
# Few examples and no deadline: the suite shares two cores. No example database: a failure is reproduced from the
# example hypothesis prints, not replayed from .hypothesis/ (which holds only caches and ignores itself in git).
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# --------------------------------------------------------------------------------------------------
# The release CSV parser
# --------------------------------------------------------------------------------------------------

CSV_PATH = "train.csv"
NUM_CLASSES = DATASETS["ag_news"].num_classes
CSV_ERROR = re.compile(rf"^{re.escape(CSV_PATH)}: (line \d+[: ]|file is empty)")

# Text made of what a CSV parser branches on (quotes, commas, line breaks, digits, signs) as well as any text.
csv_text = st.one_of(st.text(), st.text(alphabet='0123456789-+ ",\n\r\tab\\\x00３'))
class_index_fields = st.one_of(
    st.integers(-2, NUM_CLASSES + 2).map(str),
    st.text(alphabet="0123456789+-_ .３", max_size=6),
    # numbers of any length, beyond the 4,300 digits that int() converts
    st.builds(str.__mul__, st.sampled_from(string.digits), st.integers(1, 2 * sys.get_int_max_str_digits())),
)
rows = st.lists(
    st.tuples(class_index_fields, st.one_of(st.lists(st.text(), min_size=2, max_size=2), st.lists(st.text(), max_size=3))).map(lambda row: [row[0], *row[1]]),
    min_size=1,
    max_size=5,
)


def csv_records(content: str) -> int:
    return sum(1 for _ in csv.reader(io.StringIO(content, newline=""), strict=True))


def parse_or_data_error(content: str) -> list[Document] | None:
    """The documents, checked to carry valid labels, or None after a DataError that names the file and line."""
    try:
        documents = parse_release_csv(CSV_PATH, content, NUM_CLASSES)
    except DataError as exc:
        assert CSV_ERROR.match(str(exc)), str(exc)
        return None
    assert all(1 <= doc.class_index <= NUM_CLASSES and doc.label == doc.class_index - 1 for doc in documents)
    return documents


@PROPERTY
@given(content=csv_text)
def test_any_text_is_one_document_per_csv_record_or_a_data_error(content: str) -> None:
    documents = parse_or_data_error(content)
    if documents is not None:
        assert len(documents) == csv_records(content) > 0


@PROPERTY
@given(rows=rows, quoting=st.sampled_from([csv.QUOTE_ALL, csv.QUOTE_MINIMAL]))
def test_written_rows_parse_back_row_for_row_or_a_data_error(rows: list[list[str]], quoting: int) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=quoting, lineterminator="\n").writerows(rows)
    documents = parse_or_data_error(buffer.getvalue())
    if documents is not None:
        assert documents == [Document(int(row[0]), row[1], row[2]) for row in rows]


def test_a_class_index_too_long_for_int_is_a_data_error() -> None:
    # int() refuses more than 4,300 digits with a plain ValueError (sys.get_int_max_str_digits).
    content = '"3","t","d"\n"' + "1" * 5000 + '","t","d"\n'
    with pytest.raises(DataError, match=rf"^{CSV_PATH}: line 2: class index of 5000 digits is out of range; expected 1\.\.4$"):
        parse_release_csv(CSV_PATH, content, NUM_CLASSES)


# --------------------------------------------------------------------------------------------------
# The text cleaner
# --------------------------------------------------------------------------------------------------


def is_kept(ch: str) -> bool:
    """What cleaning keeps: letters and digits (``\\w`` without ``_``) and combining marks."""
    return re.fullmatch(r"[^\W_]", ch) is not None or unicodedata.category(ch).startswith("M")


@PROPERTY
@given(text=st.one_of(st.text(), st.text(alphabet="aZ0 _'’`#&;<>\\\u0301\u0915\u093f\u00a0.")), lowercase=st.booleans())
def test_cleaned_text_is_words_separated_by_single_spaces(text: str, lowercase: bool) -> None:
    cleaned = clean_text(text, lowercase=lowercase)
    assert isinstance(cleaned, str)
    assert cleaned == cleaned.strip(" ") and "  " not in cleaned
    assert all(ch == " " or is_kept(ch) for ch in cleaned), ascii(cleaned)
    if lowercase:
        assert cleaned == cleaned.lower()


# --------------------------------------------------------------------------------------------------
# The .npz loader of tokenized splits, calibration rows and activation ranges
# --------------------------------------------------------------------------------------------------

valid_arrays = st.dictionaries(
    st.sampled_from(["tokens", "lengths", "labels", "source_rows"]),
    arrays(st.sampled_from([np.int32, np.int64, np.float32]), array_shapes(min_dims=1, max_dims=2, max_side=4)),
    min_size=1,
)


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


PICKLED_NPY = npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True)


@st.composite
def damaged_archives(draw: st.DrawFn) -> bytes:
    """A real archive, truncated or with one byte changed."""
    data = bytearray(arrays_to_bytes(draw(valid_arrays)))
    at = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        return bytes(data[:at])
    data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


@st.composite
def foreign_archives(draw: st.DrawFn) -> bytes:
    """A well-formed zip whose members are anything: arrays, pickled objects, text, junk."""
    names = st.one_of(st.sampled_from(["tokens.npy", "labels.npy", "notes.txt", "sub/x.npy"]), st.text(string.ascii_letters + "._", min_size=1, max_size=8))
    contents = st.one_of(st.binary(max_size=64), st.just(PICKLED_NPY), valid_arrays.map(lambda a: npy_bytes(next(iter(a.values())))))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for name, content in draw(st.dictionaries(names, contents, max_size=3)).items():
            archive.writestr(name, content)
    return buffer.getvalue()


npz_files = st.one_of(
    st.binary(max_size=256),
    st.sampled_from([b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY\x01\x00"]).flatmap(lambda magic: st.binary(max_size=128).map(lambda tail: magic + tail)),
    valid_arrays.map(lambda a: npy_bytes(next(iter(a.values())))),  # a bare .npy under an .npz name
    damaged_archives(),
    foreign_archives(),
)


@PROPERTY
@given(content=npz_files)
def test_any_bytes_load_as_arrays_or_a_data_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    try:
        loaded = load_arrays(path)
    except DataError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return
    assert isinstance(loaded, dict)  # an empty archive loads as {}: load_split names the arrays it lacks
    assert all(isinstance(name, str) and isinstance(value, np.ndarray) and value.dtype != object for name, value in loaded.items())


@PROPERTY
@given(original=valid_arrays)
def test_written_arrays_load_back_identical(tmp_path: Path, original: dict[str, np.ndarray]) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(arrays_to_bytes(original))
    loaded = load_arrays(path)
    assert sorted(loaded) == sorted(original)
    for name, array in original.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array, equal_nan=True)


@pytest.mark.parametrize(
    "content, detail",
    [
        (b"", "EOFError"),
        (b"PK\x03\x04 truncated", "BadZipFile"),
        (b"not an archive", "ValueError"),
        (npy_bytes(np.arange(3)), "TypeError"),
    ],
)
def test_a_damaged_npz_is_a_data_error_naming_the_file(tmp_path: Path, content: bytes, detail: str) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a loadable \.npz archive \({detail}"):
        load_arrays(path)


def test_an_npz_member_that_is_not_an_array_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "train.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tokens.npy", npy_bytes(np.arange(3)))
        archive.writestr("notes.txt", b"not an array")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: member 'notes.txt' is not a \.npy array$"):
        load_arrays(path)


def test_a_corrupt_deflated_member_is_a_data_error(tmp_path: Path) -> None:
    content = bytearray(arrays_to_bytes({"tokens": np.arange(64, dtype=np.int64)}))
    content[60] ^= 0xFF  # inside the deflated data of the only member: zlib.error or a CRC mismatch
    path = tmp_path / "train.npz"
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a loadable \.npz archive"):
        load_arrays(path)


split_arrays = st.fixed_dictionaries(
    {
        name: arrays(st.sampled_from([np.int32, np.int64, np.int8, np.float32]), array_shapes(min_dims=1, max_dims=2, max_side=4), elements=st.integers(-2, 6))
        for name in ("tokens", "lengths", "labels", "source_rows")
    }
)


def load_split_or_data_error(path: Path) -> EncodedSplit | None:
    """The split, checked to hold what the models may index with, or None after a DataError naming the file."""
    try:
        split = load_split(path.parent, path.stem, num_classes=NUM_CLASSES)
    except DataError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return None
    assert len(split.tokens) == len(split.lengths) == len(split.labels) == len(split.source_rows)
    assert split.tokens.ndim == 2 and all(a.ndim == 1 for a in (split.lengths, split.labels, split.source_rows))
    assert all(a.dtype.kind in "iu" for a in (split.tokens, split.lengths, split.labels, split.source_rows))
    assert ((split.lengths >= 1) & (split.lengths <= split.tokens.shape[1])).all() and (split.tokens >= 0).all()
    assert ((split.labels >= 0) & (split.labels < NUM_CLASSES)).all() and (split.source_rows >= 0).all()
    return split


@PROPERTY
@given(content=npz_files)
def test_any_bytes_load_as_a_checked_split_or_a_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "train.npz"
    path.write_bytes(content)
    load_split_or_data_error(path)


@PROPERTY
@given(original=split_arrays)
def test_any_split_arrays_load_back_identical_or_give_a_data_error(tmp_path: Path, original: dict[str, np.ndarray]) -> None:
    path = tmp_path / "test.npz"
    path.write_bytes(arrays_to_bytes(original))
    split = load_split_or_data_error(path)
    if split is not None:
        assert all(np.array_equal(getattr(split, name), array) and getattr(split, name).dtype == array.dtype for name, array in original.items())


# --------------------------------------------------------------------------------------------------
# The params.yaml validator
# --------------------------------------------------------------------------------------------------

WILDCARD_NAMES = {DATASET_KEY: tuple(DATASETS), MODEL_TYPE_KEY: MODEL_TYPE_NAMES, TREE_KEY: ("seed_b", "wide")}  # any TREE_NAME for trees


def valid_keys(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a params section may hold, each with its sub-schema: a placeholder stands for its names and is no key itself."""
    keys = {key: sub for key, sub in schema.items() if key not in WILDCARD_NAMES}
    for wildcard, names in WILDCARD_NAMES.items():
        if wildcard in schema:
            keys.update(dict.fromkeys(names, schema[wildcard]))
    return keys


def sub_schema(schema: Mapping[str, Any], key: Any) -> Any:
    """The schema of ``key`` in a section of ``schema``; KeyError when the section may not hold it."""
    allowed = valid_keys(schema)
    if isinstance(key, str) and key in allowed:
        return allowed[key]
    if TREE_KEY in schema and isinstance(key, str) and TREE_NAME.match(key):
        return schema[TREE_KEY]
    raise KeyError(key)


def first_problem(params: Any, schema: Mapping[str, Any], where: str = "") -> str | None:
    """The dotted key of the first unknown key or non-mapping section, in the file's order; None if there is none."""
    if not isinstance(params, Mapping):
        return where or "params.yaml"
    for key, value in params.items():
        name = f"{where}.{key}" if where else str(key)
        try:
            sub = sub_schema(schema, key)
        except KeyError:
            return name
        if isinstance(sub, dict) and value is not None:
            problem = first_problem(value, sub, name)
            if problem is not None:
                return problem
    return None


def assert_validated_exactly(params: dict[Any, Any]) -> None:
    """validate_params passes when :func:`first_problem` finds nothing, else raises a ParamError led by that key."""
    problem = first_problem(params, SCHEMA)
    if problem is None:
        validate_params(params)
        return
    with pytest.raises(ParamError) as raised:
        validate_params(params)
    assert str(raised.value).startswith(f"{problem}: "), (problem, str(raised.value))


def key_paths(params: Mapping[str, Any], where: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in params.items():
        paths.append((*where, key))
        if isinstance(value, Mapping):
            paths.extend(key_paths(value, (*where, key)))
    return paths


def schema_at(path: tuple[str, ...]) -> Mapping[str, Any]:
    """The schema of the section at ``path``; a tree's name (any name, under ``trees``) stands for TREE_KEY."""

    def step(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        keys = valid_keys(schema)
        return keys[key] if key in keys else schema[TREE_KEY]

    return reduce(step, path, SCHEMA)


REPO_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
REPO_SECTIONS = [(), *(path for path in key_paths(REPO_PARAMS) if isinstance(reduce(operator.getitem, path, REPO_PARAMS), Mapping))]
# Every key a section's schema names, per section: its own keys (placeholders included, as they appear in it), dataset and model names.
SCHEMA_KEYS = [(path, key) for path in REPO_SECTIONS for key in sorted({*schema_at(path), *valid_keys(schema_at(path))})]

leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.lists(st.integers(), max_size=3))
foreign_keys = st.one_of(st.text(max_size=12), st.integers(), st.none())


def params_like(schema: Mapping[str, Any]) -> st.SearchStrategy[dict[Any, Any]]:
    """Dicts shaped by ``schema``: keys it names (placeholders included) and sometimes a foreign key; a
    section's value is such a dict again, None (an empty section) or anything."""
    keys = sorted({*schema, *valid_keys(schema)})

    def value(key: str) -> st.SearchStrategy[Any]:
        sub = valid_keys(schema).get(key, schema.get(key))
        return st.one_of(st.none(), params_like(sub), leaves) if isinstance(sub, dict) else leaves

    known = st.lists(st.sampled_from(keys), unique=True, max_size=4).flatmap(lambda chosen: st.fixed_dictionaries({k: value(k) for k in chosen}))
    foreign = st.dictionaries(foreign_keys, leaves, max_size=1)
    return st.tuples(known, foreign).map(lambda parts: {**parts[0], **parts[1]})


@st.composite
def one_key_added(draw: st.DrawFn) -> dict[str, Any]:
    """The repository's params.yaml with one key of :data:`SCHEMA_KEYS`, or a foreign key, set in one of its sections."""
    params = copy.deepcopy(REPO_PARAMS)
    path, key = draw(st.one_of(st.sampled_from(SCHEMA_KEYS), st.tuples(st.sampled_from(REPO_SECTIONS), foreign_keys)))
    reduce(operator.getitem, path, params)[key] = draw(st.one_of(st.none(), st.just({}), leaves))
    return params


@PROPERTY
@given(params=params_like(SCHEMA))
def test_validation_passes_exactly_when_every_key_is_in_the_schema(params: dict[Any, Any]) -> None:
    assert_validated_exactly(params)


@PROPERTY
@given(params=one_key_added())
def test_one_key_added_to_the_repository_params_is_validated_exactly(params: dict[str, Any]) -> None:
    assert_validated_exactly(params)


def test_every_key_a_schema_names_is_validated_exactly_in_every_section() -> None:
    # Exhaustive where sampling is thin: each of SCHEMA_KEYS as an empty section (null, {}) or a value.
    for (path, key), value in itertools.product(SCHEMA_KEYS, [None, {}, 1]):
        params = copy.deepcopy(REPO_PARAMS)
        reduce(operator.getitem, path, params)[key] = value
        assert_validated_exactly(params)


@pytest.mark.parametrize("section, placeholder", [("download", DATASET_KEY), ("train", MODEL_TYPE_KEY)])
def test_a_schema_placeholder_is_not_a_valid_key(section: str, placeholder: str) -> None:
    params = copy.deepcopy(REPO_PARAMS)
    params[section][placeholder] = {}  # was accepted: SCHEMA lists the placeholder itself as a key
    with pytest.raises(ParamError, match=rf"^{section}\.{re.escape(placeholder)}: unknown key"):
        validate_params(params)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@st.composite
def misspelt(draw: st.DrawFn) -> tuple[tuple[str, ...], str]:
    """A key path of the repository's params.yaml and a one-edit typo of its last key."""
    path = draw(st.sampled_from(key_paths(REPO_PARAMS)))
    key = path[-1]
    at = draw(st.integers(0, len(key) - 1))
    letter = draw(st.sampled_from(string.ascii_lowercase + "_"))
    typo = draw(
        st.sampled_from(
            [
                key[:at] + key[at + 1 :],  # deleted
                key[:at] + letter + key[at:],  # inserted
                key[:at] + letter + key[at + 1 :],  # replaced
                key[:at] + key[at + 1 : at + 2] + key[at : at + 1] + key[at + 2 :],  # swapped with the next
            ]
        )
    )
    return path, typo


@PROPERTY
@given(case=misspelt())
def test_a_misspelt_key_is_named_with_the_closest_valid_key(case: tuple[tuple[str, ...], str]) -> None:
    path, typo = case
    allowed = valid_keys(schema_at(path[:-1]))
    if typo in allowed or TREE_KEY in schema_at(path[:-1]):
        return  # the edit made another valid key (any name is a valid tree name: renaming a tree is no typo)
    params = copy.deepcopy(REPO_PARAMS)
    section = reduce(operator.getitem, path[:-1], params)
    section[typo] = section.pop(path[-1])
    with pytest.raises(ParamError) as raised:
        validate_params(params)
    message = str(raised.value)
    suggested = re.fullmatch(rf"{re.escape('.'.join((*path[:-1], typo)))}: unknown key; did you mean '([^']+)'\?", message)
    assert suggested and suggested.group(1) in allowed, message
    assert levenshtein(typo, suggested.group(1)) == min(levenshtein(typo, key) for key in allowed) <= 2, message


# Explicit core-schema tags and date-like values make PyYAML's own constructors fail on a malformed scalar.
yaml_scalars = st.tuples(
    st.sampled_from(["", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!str ", "!!null "]),
    st.one_of(st.text(alphabet="0123456789-_:.xTt+ ", max_size=12), st.text(max_size=8)),
).map("".join)
yaml_text = st.one_of(
    st.text(),
    st.lists(st.tuples(st.sampled_from(sorted(SCHEMA)), yaml_scalars), max_size=4).map(lambda items: "".join(f"{k}: {v}\n" for k, v in items)),
    params_like(SCHEMA).map(lambda p: yaml.safe_dump(p, allow_unicode=True)),
)


@PROPERTY
@given(text=yaml_text)
def test_any_yaml_text_loads_validated_or_is_a_param_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        params = load_params(path)
    except ParamError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return
    assert isinstance(params, dict) and first_problem(params, SCHEMA) is None


@pytest.mark.parametrize(
    "text, detail",
    [
        ("seed: 2025-13-45\n", "month must be in 1..12"),  # an implicit timestamp out of range: ValueError
        ("seed: !!int x\n", "invalid literal for int()"),  # ValueError
        ("seed: !!bool x\n", "KeyError"),
        ("seed: !!int +\n", "IndexError"),
        ("seed: !!timestamp x\n", "AttributeError"),
    ],
)
def test_a_malformed_yaml_scalar_is_a_param_error_naming_the_file(tmp_path: Path, text: str, detail: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ParamError, match=rf"^{re.escape(str(path))}: not valid YAML \(.*{re.escape(detail)}"):
        load_params(path)
