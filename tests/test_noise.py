"""Character-level input noise (sections 4.3.3, 5.5) on real AG News text: rates, coupling, noisy test sets."""

import math
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BUNDLED, bundled_rows

from lstm_ptq.artifacts import load_arrays, read_json
from lstm_ptq.datasets import DATASETS, Document, format_release_csv, read_release_csv
from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.noise import (
    CHAR_VOCAB_FILE,
    DEFAULT_LEVELS,
    NOISE_MODELS,
    QWERTY_NEIGHBOURS,
    STATS_FILE,
    CharVocabulary,
    build_char_vocabulary,
    build_noisy_test_sets,
    corrupt_levels,
    corrupt_text,
    level_name,
    load_char_vocabulary,
    load_noisy_split,
    noise_model,
)
from lstm_ptq.preprocess import build_tokenized, load_split, load_vocabulary
from lstm_ptq.settings import GridSettings, NoiseSettings, TokenizeSettings, load_params
from lstm_ptq.text import UNK_ID, clean_text, document_text, tokenize

UNIFORM, QWERTY = NOISE_MODELS["uniform_substitution"], NOISE_MODELS["qwerty_typo"]
SEED = 2025


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], CharVocabulary]:
    """1,000 real AG News training documents (about 250,000 characters) and their character vocabulary."""
    docs = bundled_rows("ag_news", "train.csv", limit=1000)
    texts = [document_text(d.title, d.text) for d in docs]
    assert sum(map(len, texts)) >= 200_000
    return texts, build_char_vocabulary(docs)


def corrupt_corpus(texts, levels, model, vocabulary, seed=SEED, ids=None):
    ids = range(len(texts)) if ids is None else ids
    return [corrupt_levels(t, levels, model, vocabulary, seed, i) for t, i in zip(texts, ids)]


def changed_positions(original: str, noisy: str) -> dict[int, str]:
    assert len(original) == len(noisy)
    return {i: b for i, (a, b) in enumerate(zip(original, noisy)) if a != b}


# --- the noise function -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["uniform_substitution", "qwerty_typo"])
def test_change_rate_matches_noise_level(corpus, model):
    """Measured change rate = epsilon x P(a substitution changes the character), within 4 standard errors."""
    texts, vocabulary = corpus
    levels = [0.01, 0.04, 0.1]
    noisy = corrupt_corpus(texts, levels, NOISE_MODELS[model], vocabulary)
    chars = Counter("".join(texts))
    n = sum(chars.values())
    known = set(vocabulary.chars)
    if model == "uniform_substitution":  # the draw may return the original character (paper: uniform over V)
        changeable = sum(count * (1 - (c in known) / len(vocabulary)) for c, count in chars.items()) / n
        assert changeable > 0.98
    else:  # only letters and digits have keyboard neighbours
        changeable = sum(count for c, count in chars.items() if QWERTY_NEIGHBOURS.get(c)) / n
        assert 0.7 < changeable < 0.9
    for j, eps in enumerate(levels):
        changed = sum(len(changed_positions(t, v[j])) for t, v in zip(texts, noisy))
        expected = eps * changeable
        assert abs(changed / n - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (eps, changed / n, expected)


def test_uniform_replacements_cover_the_vocabulary_evenly(corpus):
    """At epsilon = 1 every character is replaced by a uniform draw from a (small) character vocabulary."""
    texts, _ = corpus
    small = CharVocabulary.from_texts(["aeiou xyz!?"])
    noisy = "".join(v[0] for v in corrupt_corpus(texts, [1.0], UNIFORM, small))
    counts = Counter(noisy)
    assert set(counts) == set(small.chars)
    n, k = len(noisy), len(small)
    expected = n / k
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in small.chars)
    assert chi2 < 35.0  # 99.99th percentile of chi-square with 10 degrees of freedom


@pytest.mark.parametrize("model", ["uniform_substitution", "qwerty_typo"])
def test_noise_level_zero_is_the_identity(corpus, model):
    texts, vocabulary = corpus
    assert [v[0] for v in corrupt_corpus(texts, [0.0], NOISE_MODELS[model], vocabulary)] == texts
    assert corrupt_text(texts[0], 0, NOISE_MODELS[model], vocabulary, SEED, 0) == texts[0]


@pytest.mark.parametrize("model", ["uniform_substitution", "qwerty_typo"])
def test_corruption_is_coupled_across_levels(corpus, model):
    """A character corrupted at 0.02 is corrupted, with the same replacement, at 0.06 (separate calls)."""
    texts, vocabulary = corpus
    nested = grown = 0
    for doc_id, text in enumerate(texts[:400]):
        low = changed_positions(text, corrupt_text(text, 0.02, NOISE_MODELS[model], vocabulary, SEED, doc_id))
        high = changed_positions(text, corrupt_text(text, 0.06, NOISE_MODELS[model], vocabulary, SEED, doc_id))
        assert low.items() <= high.items(), doc_id
        nested += len(low)
        grown += len(high) - len(low)
    assert nested > 500 and grown > 2 * nested


def test_qwerty_typos_are_a_subset_of_uniform_substitutions(corpus):
    """Both models share the per-document draws: the same positions are hit, qwerty only where a key has neighbours."""
    texts, vocabulary = corpus
    for doc_id, text in enumerate(texts[:200]):
        uniform = corrupt_text(text, 1.0, UNIFORM, vocabulary, SEED, doc_id)
        typo = corrupt_text(text, 0.05, QWERTY, vocabulary, SEED, doc_id)
        hit = corrupt_text(text, 0.05, UNIFORM, vocabulary, SEED, doc_id)
        for i in changed_positions(text, typo):
            assert hit[i] == uniform[i]  # position i is corrupted at 0.05 by the uniform model too


def test_output_characters_come_from_the_vocabulary(corpus):
    texts, _ = corpus
    vocabulary = CharVocabulary.from_texts(texts[:5])  # a vocabulary missing many characters of the corpus
    missing = set("".join(texts)) - set(vocabulary.chars)
    assert missing
    for text, (partial, full) in zip(texts, corrupt_corpus(texts, [0.1, 1.0], UNIFORM, vocabulary)):
        assert all(new == old or new in vocabulary.chars for old, new in zip(text, partial))
        assert set(full) <= set(vocabulary.chars)
    for text, (typo,) in zip(texts, corrupt_corpus(texts, [1.0], QWERTY, vocabulary)):
        assert all(new == old or new in vocabulary.chars for old, new in zip(text, typo))


def test_noise_is_deterministic_and_independent_of_document_order(corpus):
    texts, vocabulary = corpus
    texts = texts[:300]
    ids = list(range(1000, 1300))
    first = corrupt_corpus(texts, DEFAULT_LEVELS, UNIFORM, vocabulary, ids=ids)
    again = corrupt_corpus(texts, DEFAULT_LEVELS, UNIFORM, vocabulary, ids=ids)
    backwards = corrupt_corpus(texts[::-1], DEFAULT_LEVELS, UNIFORM, vocabulary, ids=ids[::-1])[::-1]
    assert first == again == backwards
    # The noise depends on the seed and on the document id, not on the text alone.
    other_seed = corrupt_corpus(texts, DEFAULT_LEVELS, UNIFORM, vocabulary, seed=SEED + 1, ids=ids)
    other_ids = corrupt_corpus(texts, DEFAULT_LEVELS, UNIFORM, vocabulary, ids=[i + 1 for i in ids])
    assert sum(a[-1] != b[-1] for a, b in zip(first, other_seed)) > 250
    assert sum(a[-1] != b[-1] for a, b in zip(first, other_ids)) > 250


def test_qwerty_neighbours_are_adjacent_keys(corpus):
    expected = {  # read off a keyboard
        "q": "12wa",
        "a": "qwsz",
        "s": "weadzx",
        "g": "tyfhvb",
        "p": "0ol",
        "m": "njk",
        "z": "asx",
        "1": "2q",
        "5": "46rt",
    }
    for key, near in expected.items():
        assert set(QWERTY_NEIGHBOURS[key]) == set(near), key
        if key.isalpha():
            assert set(QWERTY_NEIGHBOURS[key.upper()]) == set(near.upper()), key
    for key, near in QWERTY_NEIGHBOURS.items():  # adjacency is symmetric (up to case for digits)
        for other in near:
            assert key in QWERTY_NEIGHBOURS[other] or key.lower() in QWERTY_NEIGHBOURS[other.lower()], (key, other)
    assert len(QWERTY_NEIGHBOURS) == 10 + 2 * 26

    texts, vocabulary = corpus
    for text, (typo,) in zip(texts[:300], corrupt_corpus(texts[:300], [1.0], QWERTY, vocabulary)):
        for old, new in zip(text, typo):
            if old in QWERTY_NEIGHBOURS:
                assert new in QWERTY_NEIGHBOURS[old], (old, new)
                assert new.isupper() == old.isupper() or new.isdigit() or old.isdigit()
            else:
                assert new == old  # punctuation, spaces, accented letters have no neighbours


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [-0.01, 1.01, float("nan"), float("inf"), True, "0.1", None])
def test_noise_level_outside_unit_interval_is_refused(corpus, level):
    texts, vocabulary = corpus
    with pytest.raises(ParamError, match=r"noise_level: .* is not a noise level in \[0, 1\]"):
        corrupt_text(texts[0], level, UNIFORM, vocabulary, SEED, 0)


def test_unknown_noise_model_and_empty_vocabulary_are_refused(tmp_path):
    with pytest.raises(ParamError, match=r"noise.models: unknown noise model 'gaussian'; expected one of \['qwerty_typo', 'uniform_substitution'\]"):
        noise_model("gaussian")
    with pytest.raises(ParamError, match="unknown noise model 'ocr'"):
        build_noisy_test_sets("ag_news", tmp_path, tmp_path, tmp_path / "out", "ocr", [0.0], SEED, True, 40)
    for make in (lambda: CharVocabulary(()), lambda: CharVocabulary.from_texts([]), lambda: build_char_vocabulary([])):
        with pytest.raises(DataError, match="character vocabulary is empty"):
            make()
    (tmp_path / "chars.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match=r"chars.json: character vocabulary is empty"):
        load_char_vocabulary(tmp_path / "chars.json")
    assert not (tmp_path / "out").exists()


REPO = Path(__file__).resolve().parents[1]


def noise_params(seed: int = 11, **noise) -> dict:
    """params.yaml with the ``noise`` section (and the top-level seed) replaced."""
    params = load_params(REPO / "params.yaml")
    params["seed"] = seed
    params["noise"] = {"levels": list(DEFAULT_LEVELS), **noise}
    return params


def test_noise_settings_are_validated_with_their_key():
    settings = NoiseSettings.from_params(noise_params())
    assert settings == NoiseSettings(DEFAULT_LEVELS, 11)
    assert NoiseSettings.from_params(noise_params(seed=3)).seed == 3  # the noise seed is the top-level seed
    bad = [
        (noise_params(levels=[0.0, 1.5]), r"noise.levels\[1\]: 1.5 is not a noise level in \[0, 1\]"),
        (noise_params(levels=[0.0, -0.1]), r"noise.levels\[1\]: -0.1"),
        (noise_params(levels=[0.01, 0.01]), r"noise.levels: .* repeats a noise level"),
        (noise_params(levels=[]), r"noise.levels: \[\] is not a non-empty list"),
        (noise_params(levels=0.1), r"noise.levels: 0.1 is not a list"),
        (noise_params(seed=-1), r"^seed: -1 must be >= 0"),
        ({"seed": 11}, r"noise: missing from params.yaml"),
    ]
    for params, message in bad:
        with pytest.raises(ParamError, match=message):
            NoiseSettings.from_params(params)


def test_noise_models_are_validated_in_the_grid():
    """The noise models are an axis of the study: ``grid.noise_models`` (formerly ``noise.models``)."""
    params = noise_params()
    assert GridSettings.from_params(params).noise_models == tuple(params["grid"]["noise_models"])
    for models, message in (
        (["uniform_substitution", "typo"], r"grid.noise_models\[1\]: unknown noise model 'typo'"),
        ([], r"grid.noise_models: empty"),
        (["uniform_substitution", "uniform_substitution"], r"grid.noise_models: .* repeats an entry"),
    ):
        params["grid"]["noise_models"] = models
        with pytest.raises(ParamError, match=message):
            GridSettings.from_params(params)


def test_a_separate_noise_seed_is_rejected_as_an_unknown_key(tmp_path):
    """There is no ``noise.seed`` any more (the top-level seed draws the corruption): params.yaml with one
    is refused as a whole, naming the key, before any stage reads it. ``noise.models`` moved to the grid."""
    params = noise_params()
    params["noise"]["seed"] = 3
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(ParamError, match=rf"^{re.escape(str(path))}: noise\.seed: unknown key"):
        load_params(path)
    del params["noise"]["seed"]
    params["noise"]["models"] = ["uniform_substitution"]
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(ParamError, match=r"noise\.models: unknown key"):
        load_params(path)


# --- noisy test sets -----------------------------------------------------------------------------


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def noisy_sets(small_ag_news, tmp_path_factory):
    """Uniform noisy test sets of the small AG News project, built twice in separate directories."""
    raw, tokenized = small_ag_news / "data" / "raw" / "ag_news", small_ag_news / "data" / "tokenized" / "ag_news"
    outs, stats = [], []
    for run in range(2):
        out = tmp_path_factory.mktemp(f"noisy{run}") / "ag_news" / "uniform_substitution"
        stats.append(build_noisy_test_sets("ag_news", raw, tokenized, out, "uniform_substitution", DEFAULT_LEVELS, SEED, True, 40))
        outs.append(out)
    return tokenized, outs, stats


def test_noisy_test_sets_keep_the_clean_documents_and_level_zero(noisy_sets):
    tokenized, (out, _), (stats, _) = noisy_sets
    clean = load_split(tokenized, "test")
    assert sorted(os.listdir(out)) == sorted([f"{level_name(e)}.npz" for e in DEFAULT_LEVELS] + [CHAR_VOCAB_FILE, STATS_FILE])
    # Level 0 is the clean test split, byte for byte.
    assert (out / "0.npz").read_bytes() == (tokenized / "test.npz").read_bytes()
    oov = []
    for eps in DEFAULT_LEVELS:
        split = load_noisy_split(out, eps)
        assert set(load_arrays(out / f"{level_name(eps)}.npz")) == {"tokens", "lengths", "labels", "source_rows"}
        np.testing.assert_array_equal(split.source_rows, clean.source_rows)
        np.testing.assert_array_equal(split.labels, clean.labels)
        assert split.tokens.dtype == clean.tokens.dtype and split.lengths.dtype == clean.lengths.dtype
        assert split.lengths.min() >= 1 and split.tokens.shape[1] <= 40
        level = stats["levels"][level_name(eps)]
        assert level["documents"] == len(clean)
        # The stats are measured on the arrays that were written.
        assert level["oov_rate"] == round(float((split.tokens == UNK_ID).sum() / split.lengths.sum()), 6)
        assert abs(level["char_change_rate"] - eps) <= 0.15 * eps + 1e-9
        oov.append(level["oov_rate"])
    assert all(a < b for a, b in zip(oov, oov[1:])), oov
    assert oov[-1] > oov[0] + 0.15
    assert read_json(out / STATS_FILE) == stats
    chars = load_char_vocabulary(out / CHAR_VOCAB_FILE)
    assert {"a", "Z", " ", "7"} <= set(chars.chars)


def test_noisy_test_sets_are_byte_identical_across_runs(noisy_sets):
    _, (first, second), (stats1, stats2) = noisy_sets
    assert snapshot(first) == snapshot(second)
    assert stats1 == stats2


def test_mismatched_tokenize_settings_fail_without_touching_the_output(small_ag_news, tmp_path):
    raw, tokenized = small_ag_news / "data" / "raw" / "ag_news", small_ag_news / "data" / "tokenized" / "ag_news"
    out = tmp_path / "noisy"
    out.mkdir()
    (out / "previous.txt").write_text("kept", encoding="utf-8")
    with pytest.raises(DataError, match="noise level 0 does not reproduce the clean test split"):
        build_noisy_test_sets("ag_news", raw, tokenized, out, "qwerty_typo", [0.0, 0.05], SEED, True, 12)
    assert os.listdir(out) == ["previous.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["noisy"]  # no staging directory left behind


EMPTY_ROW = 3
MARKED = "\u2460\u2461\u2462\u2463\u2464\u2465\u2466\u2467\u2468\u2469"  # circled digits: not in AG News


@pytest.fixture(scope="module")
def crafted_project(tmp_path_factory) -> Path:
    """Real rows plus ten training rows each marked with its own rare character (some land in validation)
    and thirty one-letter test documents that uniform noise at epsilon = 1 may empty."""
    spec = DATASETS["ag_news"]
    root = tmp_path_factory.mktemp("crafted")
    raw = root / "raw"
    raw.mkdir()
    train = bundled_rows("ag_news", "train.csv", limit=300) + [Document(1 + i % 4, f"marked {c}", "row") for i, c in enumerate(MARKED)]
    test = bundled_rows("ag_news", "test.csv", limit=20) + [Document(1 + i % 4, "x", "") for i in range(30)]
    test.insert(EMPTY_ROW, Document(2, "!!!", "?! ... --"))  # skipped by tokenize: source rows are not positions
    (raw / "train.csv").write_text(format_release_csv(train, spec), encoding="utf-8")
    (raw / "test.csv").write_text(format_release_csv(test, spec), encoding="utf-8")
    (raw / "classes.txt").write_bytes((BUNDLED / "ag_news" / "classes.txt").read_bytes())
    params = TokenizeSettings(lowercase=True, max_vocab_size=3000, min_freq=1, max_length=30, valid_fraction=0.2, seed=7)
    build_tokenized("ag_news", raw, root / "tokenized", params)
    return root


def test_character_vocabulary_comes_from_the_training_split_only(crafted_project, tmp_path):
    """Validation rows are not part of the model's training text."""
    root = crafted_project
    build_noisy_test_sets("ag_news", root / "raw", root / "tokenized", tmp_path / "noisy", "qwerty_typo", [0.0], SEED, True, 30)
    chars = set(load_char_vocabulary(tmp_path / "noisy" / CHAR_VOCAB_FILE).chars)
    train_rows = set(load_arrays(root / "tokenized" / "train.npz")["source_rows"].tolist())
    in_train = {c for i, c in enumerate(MARKED) if 300 + i in train_rows}  # train.csv rows 300..309
    assert chars & set(MARKED) == in_train
    assert 0 < len(in_train) < len(MARKED)
    docs = read_release_csv(root / "raw" / "train.csv", 4)
    assert chars == set(build_char_vocabulary(docs[r] for r in sorted(train_rows)).chars)


def test_documents_emptied_by_noise_are_kept_as_unknown(crafted_project, tmp_path):
    """A one-letter document can lose its only letter; it stays in the test set as a single <unk>. Every
    document equals the per-document reference: corrupt (seeded by its source row), clean, tokenize, encode."""
    root = crafted_project
    levels = [0.0, 0.1, 1.0]
    stats = build_noisy_test_sets("ag_news", root / "raw", root / "tokenized", tmp_path / "noisy", "uniform_substitution", levels, SEED, True, 30)
    clean = load_split(root / "tokenized", "test")
    assert len(clean) == 50 and EMPTY_ROW not in clean.source_rows
    vocabulary = load_vocabulary(root / "tokenized")
    chars = load_char_vocabulary(tmp_path / "noisy" / CHAR_VOCAB_FILE)
    docs = read_release_csv(root / "raw" / "test.csv", 4)
    for eps in levels:
        split = load_noisy_split(tmp_path / "noisy", eps)
        texts = [corrupt_text(document_text(docs[r].title, docs[r].text), eps, UNIFORM, chars, SEED, int(r)) for r in clean.source_rows]
        expected = [[vocabulary.index.get(t, UNK_ID) for t in doc][:30] or [UNK_ID] for doc in tokenize(clean_text(t) for t in texts)]
        assert [row[:n].tolist() for row, n in zip(split.tokens, split.lengths)] == expected, eps
    emptied = [
        i
        for i, r in enumerate(clean.source_rows)
        if docs[r].title == "x" and not any(ch.isalnum() for ch in corrupt_text("x", 1.0, UNIFORM, chars, SEED, int(r)))
    ]
    assert emptied and stats["levels"]["1"]["empty_after_cleaning"] >= len(emptied)
    assert stats["levels"]["0"]["empty_after_cleaning"] == 0
    noisy = load_noisy_split(tmp_path / "noisy", 1.0)
    for i in emptied:
        assert noisy.lengths[i] == 1 and noisy.tokens[i, 0] == UNK_ID
