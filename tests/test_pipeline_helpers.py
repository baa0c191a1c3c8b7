"""The helpers every stage shares: staged directory outputs, CSV frames, split subsets, evenly spaced
subsets, the calibration scheme registry, and the one paths object."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstm_ptq.artifacts import atomic_write_text, load_arrays, outputs_together, read_input_bytes, save_arrays, save_figure, staged_output, write_frame
from lstm_ptq.calibration import (
    SCHEMES,
    CalibrationContext,
    Scheme,
    build_calibration_sets,
    check_scheme,
    coverage_classes_in_order,
    geometric_counts,
    needs_predictions,
    select_calibration_rows,
)
from lstm_ptq.datasets import DATASETS
from lstm_ptq.errors import ParamError
from lstm_ptq.paths import VARIANT_ROOT, ProjectPaths
from lstm_ptq.preprocess import EncodedSplit, evenly_spaced


def test_staged_output_replaces_the_directory_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with staged_output(final) as staged:
        assert staged.is_dir() and staged.parent == tmp_path and staged != final
        (staged / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or backup left behind


def test_staged_output_keeps_the_previous_output_when_the_body_raises(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="half way"):
        with staged_output(final) as staged:
            (staged / "partial.txt").write_text("partial")
            raise RuntimeError("half way")
    assert sorted(p.name for p in final.iterdir()) == ["old.txt"] and (final / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_output_creates_a_missing_output(tmp_path: Path) -> None:
    final = tmp_path / "a" / "b"
    with staged_output(final) as staged:
        (staged / "x").write_text("x")
    assert (final / "x").read_text() == "x"


def test_outputs_together_moves_every_output_into_place_when_the_block_ends(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with outputs_together():
        atomic_write_text(tmp_path / "a.txt", "new a")
        with staged_output(tmp_path / "out") as staged:
            save_arrays(staged / "x.npz", x=np.arange(3))
        atomic_write_text(tmp_path / "b.txt", "b")
        # nothing is in place yet, but the stage reads what it wrote
        assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "b.txt").exists()
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.txt"]
        assert read_input_bytes(tmp_path / "a.txt") == b"new a"
        assert load_arrays(tmp_path / "out" / "x.npz")["x"].tolist() == [0, 1, 2]
        atomic_write_text(tmp_path / "out" / "y.txt", "y")  # into the directory output already built
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.txt").read_text() == "b"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.npz", "y.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "out"]  # no pending copy left


def test_outputs_together_keeps_every_previous_output_when_the_block_raises(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="after two outputs"):
        with outputs_together():
            with staged_output(tmp_path / "out") as staged:
                (staged / "new.txt").write_text("new")
            atomic_write_text(tmp_path / "a.txt", "new a")
            atomic_write_text(tmp_path / "c.txt", "c")
            raise RuntimeError("after two outputs")
    assert (tmp_path / "a.txt").read_text() == "old a" and not (tmp_path / "c.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "out"]


def test_the_last_of_two_writes_of_one_output_wins(tmp_path: Path) -> None:
    with outputs_together():
        atomic_write_text(tmp_path / "a.txt", "first")
        atomic_write_text(tmp_path / "a.txt", "second")
    assert (tmp_path / "a.txt").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_outputs_together_blocks_do_not_nest() -> None:
    with outputs_together(), pytest.raises(RuntimeError, match="do not nest"), outputs_together():
        pass


def test_save_figure_writes_the_bytes_savefig_writes(tmp_path: Path) -> None:
    from lstm_ptq.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [2, 0, 1])
    fig.savefig(tmp_path / "direct.png", dpi=120)
    save_figure(fig, tmp_path / "saved.png")
    plt.close(fig)
    assert (tmp_path / "saved.png").read_bytes() == (tmp_path / "direct.png").read_bytes()


def _dictwriter(rows: list[dict], fieldnames: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def test_write_frame_writes_what_the_csv_module_wrote(tmp_path: Path) -> None:
    """Object frames keep every value as written by csv.DictWriter: None empty, floats as repr,
    ints as ints even beside missing values, quoting where needed."""
    rows = [
        {"dataset": "ag_news", "bit_width": 8, "accuracy": 0.8125, "error": None, "tiny": 1e-05, "name": 'Sci/Tech, "quoted"', "flag": True},
        {"dataset": "dbpedia", "bit_width": 3, "accuracy": 1.0, "error": 0.1 + 0.2, "tiny": None, "name": "plain", "flag": False},
        {"dataset": "dbpedia", "bit_width": None, "accuracy": 0.333333, "error": 12345678.9, "tiny": 2.5e-10, "name": "", "flag": None},
    ]
    columns = list(rows[0])
    write_frame(tmp_path / "frame.csv", pd.DataFrame(rows, columns=columns, dtype=object))
    assert (tmp_path / "frame.csv").read_text(encoding="utf-8") == _dictwriter(rows, columns)


def test_evenly_spaced_on_known_inputs() -> None:
    assert evenly_spaced(10, 4).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(5, 2).tolist() == [0, 4]
    assert evenly_spaced(7, 1).tolist() == [0]
    assert evenly_spaced(5, None).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(5, 5).tolist() == evenly_spaced(5, 99).tolist() == [0, 1, 2, 3, 4]
    assert evenly_spaced(0, 3).tolist() == []
    assert evenly_spaced(10, 4).dtype == np.int64


def test_split_subset_indexes_every_array_alike() -> None:
    split = EncodedSplit(
        np.arange(12, dtype=np.int32).reshape(4, 3), np.array([3, 2, 1, 3], dtype=np.int32), np.array([0, 1, 2, 3]), np.array([10, 11, 12, 13], dtype=np.int32)
    )
    part = split.subset(np.array([3, 1]))
    assert part.tokens.tolist() == [[9, 10, 11], [3, 4, 5]] and part.lengths.tolist() == [3, 2]
    assert part.labels.tolist() == [3, 1] and part.source_rows.tolist() == [13, 11] and len(part) == 2


def test_scheme_registry_carries_the_predictions_flag() -> None:
    assert all(isinstance(scheme, Scheme) for scheme in SCHEMES.values())
    assert [name for name, scheme in SCHEMES.items() if scheme.needs_predictions] == ["pseudo_class_conditional"]
    assert needs_predictions(["class_conditional", "pseudo_class_conditional"])
    assert not needs_predictions(["class_unconditional", "class_conditional", "classes_2", "classes_all"])


def test_a_new_scheme_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "first_rows", Scheme(lambda ctx: np.arange(ctx.size), needs_predictions=True))
    ctx = CalibrationContext(labels=np.array([0, 1, 0, 1, 0, 1]), num_classes=2, size=3, seed=0)
    assert select_calibration_rows("first_rows", ctx).tolist() == [0, 1, 2]
    assert needs_predictions(["first_rows"])


def test_geometric_profile_is_exact_and_capped_classes_pass_their_excess_on() -> None:
    assert geometric_counts(0.5, 1000, [10**6] * 4) == [533, 267, 133, 67]  # 1000 * (8, 4, 2, 1) / 15, largest remainders
    capped = geometric_counts(0.5, 1000, [300] * 14)
    assert capped[:4] == [300, 300, 200, 101] and sum(capped) == 1000  # 400 left for classes 2.. at 1 : 0.5 : ...
    assert capped == sorted(capped, reverse=True)


def test_imbalanced_scheme_follows_its_profile_at_the_common_size() -> None:
    labels = np.repeat(np.arange(4), [400, 500, 450, 650])  # 2,000 training rows, 4 classes
    balanced, summary = build_calibration_sets(labels, 4, 0.25, ["class_unconditional", "class_conditional", "classes_2"], seed=3)
    rows, with_imbalanced = build_calibration_sets(labels, 4, 0.25, ["class_unconditional", "class_conditional", "classes_2", "imbalanced_0.5"], seed=3)
    assert with_imbalanced["size"] == summary["size"] == 500  # the new scheme leaves every other set as it was
    assert all(np.array_equal(rows[name], balanced[name]) for name in balanced)
    histogram = with_imbalanced["class_histogram"]["imbalanced_0.5"]
    order = coverage_classes_in_order(4, 3)
    assert [histogram[c] for c in order] == geometric_counts(0.5, 500, [int((labels == c).sum()) for c in order])
    assert [histogram[c] for c in order] == [267, 133, 67, 33]
    assert set(rows["imbalanced_0.5"]) & set(rows["class_conditional"])  # prefixes of the same per-class permutations


@pytest.mark.parametrize("name", ["imbalanced_1.0", "imbalanced_0", "imbalanced_0.0", "imbalanced_half", "imbalanced_-0.5"])
def test_bad_imbalance_ratios_are_refused(name: str) -> None:
    with pytest.raises(ParamError, match="imbalanced_<r> with 0 < r < 1"):
        check_scheme(name, 4)


def test_extra_training_rows_are_part_of_the_dataset_spec() -> None:
    bundled = Path(__file__).resolve().parents[1] / "data" / "bundled"
    for spec in DATASETS.values():
        assert (bundled / spec.name / f"{spec.extra_train_file}.gz").is_file()


def test_one_paths_object_holds_every_output() -> None:
    paths = ProjectPaths(Path("root"))
    assert paths.ptq_grid() == Path("root/metrics/ptq_grid.csv")
    assert paths.noise_grid() == Path("root/metrics/noise_grid.csv")
    assert paths.calibrate_metrics("ag_news", "generative", 4, "class_conditional") == Path(
        "root/metrics/calibrate/ag_news/generative/w4/class_conditional.json"
    )
    assert paths.calibration_rows("ag_news", "generative") == Path("root/data/calibration/ag_news/generative/rows.npz")
    assert paths.noise_trained() == ProjectPaths(Path("root") / VARIANT_ROOT)
    assert paths.noise_trained().tokenized("ag_news") == Path("root/variants/noise_trained/data/tokenized/ag_news")


def test_decoder_feed_reads_the_labels_the_setting_names(tmp_path: Path) -> None:
    from lstm_ptq.artifacts import save_arrays
    from lstm_ptq.errors import DataError
    from lstm_ptq.pipeline.ptq import PREDICTED_LABELS, decoder_feed

    paths = ProjectPaths(tmp_path)
    train = EncodedSplit(np.ones((4, 3), np.int32), np.full(4, 3, np.int32), np.array([0, 1, 1, 0]), np.arange(4, dtype=np.int32))
    assert decoder_feed(paths, "ag_news", "generative", train, "all_labels") is None
    assert decoder_feed(paths, "ag_news", "discriminative", train, "true_label") is None  # no label input to feed
    assert decoder_feed(paths, "ag_news", "generative", train, "true_label").tolist() == [0, 1, 1, 0]
    rows_file = paths.calibration_rows("ag_news", "generative")
    rows_file.parent.mkdir(parents=True)
    save_arrays(rows_file, class_conditional=np.arange(2))
    with pytest.raises(DataError, match=r"rows\.npz: no predicted labels; rerun calibration_sets@ag_news-generative"):
        decoder_feed(paths, "ag_news", "generative", train, "predicted_label")
    save_arrays(rows_file, class_conditional=np.arange(2), **{PREDICTED_LABELS: np.array([1, 1, 0, 0])})
    assert decoder_feed(paths, "ag_news", "generative", train, "predicted_label").tolist() == [1, 1, 0, 0]
