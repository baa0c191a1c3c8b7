"""The two datasets of the paper (section 5.1) and their original release CSV format.

Release format (Zhang et al., 2015): no header; columns class index (1-based), title, text. AG News
quotes every field; DBPedia leaves the class index unquoted.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, ParamError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_classes: int
    quote_label: bool  # AG News writes "3", DBPedia writes 3
    archive_dir: str  # top-level folder inside the release archive
    # bundled extra training rows with the title missing: lower quality, more data (data/bundled/PROVENANCE.md)
    extra_train_file: str


DATASETS: dict[str, DatasetSpec] = {
    "ag_news": DatasetSpec("ag_news", 4, quote_label=True, archive_dir="ag_news_csv", extra_train_file="extra_train_description_only.csv"),
    "dbpedia": DatasetSpec("dbpedia", 14, quote_label=False, archive_dir="dbpedia_csv", extra_train_file="extra_content_only_unknown_split.csv"),
}

_CLASS_INDEX = re.compile(r"-?[0-9]+")


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ParamError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None


@dataclass(frozen=True)
class Document:
    """One row of a release CSV."""

    class_index: int  # 1-based, as in the file
    title: str
    text: str

    @property
    def label(self) -> int:
        """0-based label used by the models."""
        return self.class_index - 1


def decode_utf8(path: str | Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}: line {line}: invalid UTF-8 ({exc.reason} at byte {exc.start})") from None


def parse_release_csv(path: str | Path, content: str, num_classes: int) -> list[Document]:
    """Parse and validate release-format rows; any malformed row is an error naming its line."""
    if not content.strip():
        raise DataError(f"{path}: file is empty; expected rows of (class index, title, text)")
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    documents: list[Document] = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(f"{path}: line {line}: malformed CSV ({exc})") from None
        if not row:
            raise DataError(f"{path}: line {line}: empty line; expected (class index, title, text)")
        if len(row) != 3:
            raise DataError(f"{path}: line {line}: expected 3 columns (class index, title, text), found {len(row)}")
        label_field, title, text = row
        if not _CLASS_INDEX.fullmatch(label_field.strip()):  # int() would also take "1_0", "+3" and "３"
            if line == 1:
                raise DataError(f"{path}: line 1 looks like a header ({label_field!r}); the release format has no header")
            raise DataError(f"{path}: line {line}: class index {label_field!r} is not an integer in 1..{num_classes}")
        try:
            class_index = int(label_field)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits())
            raise DataError(f"{path}: line {line}: class index of {len(label_field.strip())} digits is out of range; expected 1..{num_classes}") from None
        if not 1 <= class_index <= num_classes:
            raise DataError(f"{path}: line {line}: class index {class_index} is out of range; expected 1..{num_classes}")
        if not title.strip() and not text.strip():
            raise DataError(f"{path}: line {line}: empty text (both title and text are blank)")
        documents.append(Document(class_index, title, text))
    return documents


def read_release_csv(path: str | Path, num_classes: int) -> list[Document]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    return parse_release_csv(path, decode_utf8(path, raw), num_classes)


def format_release_csv(documents: Iterable[Document], spec: DatasetSpec) -> str:
    """Write rows in the dataset's original quoting, so round trips are byte-identical."""
    buffer = io.StringIO()
    if spec.quote_label:
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for doc in documents:
            writer.writerow([str(doc.class_index), doc.title, doc.text])
    else:
        writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for doc in documents:
            writer.writerow([doc.class_index, doc.title, doc.text])
    return buffer.getvalue()


def read_classes(path: str | Path, spec: DatasetSpec) -> list[str]:
    path = Path(path)
    try:
        names = [line.strip() for line in decode_utf8(path, path.read_bytes()).splitlines() if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if len(names) != spec.num_classes:
        raise DataError(f"{path}: {len(names)} class names; expected {spec.num_classes} for {spec.name}")
    return names


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for label in labels:
        counts[label] += 1
    return counts
