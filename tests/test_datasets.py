"""The original release CSV format (Zhang et al., 2015): round trips and clear errors on bad input."""

import gzip
import re
from pathlib import Path

import pytest

from lstm_ptq.datasets import (
    DATASETS,
    Document,
    class_counts,
    dataset_spec,
    format_release_csv,
    parse_release_csv,
    read_classes,
    read_release_csv,
)
from lstm_ptq.errors import DataError, ParamError

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "bundled"
AG = DATASETS["ag_news"]
DBPEDIA = DATASETS["dbpedia"]


@pytest.mark.parametrize(
    "dataset, name, rows",
    [
        ("ag_news", "train.csv", 21933),
        ("ag_news", "test.csv", 7600),
        ("ag_news", "extra_train_description_only.csv", 15895),
        ("dbpedia", "train.csv", 5000),
        ("dbpedia", "extra_content_only_unknown_split.csv", 9896),
    ],
)
def test_bundled_files_round_trip_byte_for_byte(tmp_path, dataset, name, rows):
    spec = DATASETS[dataset]
    raw = gzip.decompress((BUNDLED / dataset / f"{name}.gz").read_bytes())
    (tmp_path / name).write_bytes(raw)
    documents = read_release_csv(tmp_path / name, spec.num_classes)
    assert len(documents) == rows
    assert format_release_csv(documents, spec).encode("utf-8") == raw


def test_release_quoting_per_dataset():
    doc = Document(3, 'A "quoted" title', " content, with comma")
    assert format_release_csv([doc], AG) == '"3","A ""quoted"" title"," content, with comma"\n'
    assert format_release_csv([doc], DBPEDIA) == '3,"A ""quoted"" title"," content, with comma"\n'


def test_real_rows_parse_to_documents():
    content = '"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street\'s dwindling\\band"\n"4","Title","multi\nline"\n'
    documents = parse_release_csv("ag.csv", content, 4)
    assert documents[0] == Document(3, "Wall St. Bears Claw Back Into the Black (Reuters)", "Reuters - Short-sellers, Wall Street's dwindling\\band")
    assert documents[0].label == 2
    assert documents[1] == Document(4, "Title", "multi\nline")


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "train.csv"
    path.write_bytes(content)
    return path


GOOD = b'"3","Wall St. Bears","Reuters - Short-sellers"\n'


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD + b'"3","only a title"\n', r"line 2: expected 3 columns \(class index, title, text\), found 2"),
        (GOOD + b'"3","a","b","c"\n', r"line 2: expected 3 columns \(class index, title, text\), found 4"),
        (GOOD + b'"x","t","d"\n', r"line 2: class index 'x' is not an integer in 1\.\.4"),
        (GOOD + b'"2.0","t","d"\n', r"line 2: class index '2\.0' is not an integer in 1\.\.4"),
        (GOOD + b'"1_0","t","d"\n', r"line 2: class index '1_0' is not an integer in 1\.\.4"),
        (GOOD + '"３","t","d"\n'.encode(), r"line 2: class index '３' is not an integer in 1\.\.4"),
        (GOOD + b'"0","t","d"\n', r"line 2: class index 0 is out of range; expected 1\.\.4"),
        (GOOD + b'"5","t","d"\n', r"line 2: class index 5 is out of range; expected 1\.\.4"),
        (GOOD + b'"-1","t","d"\n', r"line 2: class index -1 is out of range; expected 1\.\.4"),
        (GOOD + b'"3",""," "\n', r"line 2: empty text \(both title and text are blank\)"),
        (GOOD + b"\n" + GOOD, r"line 2: empty line; expected \(class index, title, text\)"),
        (GOOD + b'"3","a"b","c"\n', r"line 2: malformed CSV"),
        (GOOD + GOOD + b'"3","caf\xe9","d"\n', r"line 3: invalid UTF-8"),
        # Row 1 spans lines 1-2 inside quotes; the bad row starts on physical line 3.
        (b'"3","t","two\nlines"\n"9","t","d"\n', r"line 3: class index 9 is out of range"),
        (b'"3","t","two\nlines"\n"3","t","\xff"\n', r"line 3: invalid UTF-8"),
        (b'"Class Index","Title","Description"\n' + GOOD, r"line 1 looks like a header \('Class Index'\); the release format has no header"),
        (b"", r"file is empty; expected rows of \(class index, title, text\)"),
        (b" \n\n", r"file is empty"),
    ],
)
def test_bad_rows_name_the_file_line_and_expectation(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}"):
        read_release_csv(path, AG.num_classes)


def test_class_index_range_follows_the_dataset(tmp_path):
    path = write(tmp_path, b'14,"t"," d"\n15,"t"," d"\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: line 2: class index 15 is out of range; expected 1\.\.14$"):
        read_release_csv(path, DBPEDIA.num_classes)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: file not found$"):
        read_release_csv(path, 4)


def test_read_classes_checks_the_count(tmp_path):
    assert read_classes(BUNDLED / "ag_news" / "classes.txt", AG) == ["World", "Sports", "Business", "Sci/Tech"]
    assert len(read_classes(BUNDLED / "dbpedia" / "classes.txt", DBPEDIA)) == 14
    path = tmp_path / "classes.txt"
    path.write_text("World\nSports\n\nBusiness\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: 3 class names; expected 4 for ag_news$"):
        read_classes(path, AG)


def test_unknown_dataset_is_a_param_error():
    with pytest.raises(ParamError, match=r"unknown dataset 'imdb'; expected one of \['ag_news', 'dbpedia'\]"):
        dataset_spec("imdb")


def test_class_counts():
    assert class_counts([0, 3, 3, 1], 4) == [1, 1, 0, 2]
