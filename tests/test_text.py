"""Cleaning, spaCy tokenization and the training vocabulary (paper section 4.3.1)."""

import numpy as np
import pytest

from lstm_ptq.errors import DataError, ParamError
from lstm_ptq.text import (
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Vocabulary,
    clean_text,
    document_text,
    encode_padded,
    tokenize,
)

# Real rows: AG News train rows 1 and 2, DBPedia train row 2 (data/bundled).
AG_ROW_1 = "Reuters - Short-sellers, Wall Street's dwindling\\band of ultra-cynics, are seeing green again."
AG_ROW_2 = (
    "Reuters - Private investment firm Carlyle Group,\\which has a reputation for making well-timed "
    "and occasionally\\controversial plays in the defense industry"
)
DBPEDIA_ROW_2 = "Rubén Falcón Mínguez (born 8 October 1977 in Zaragoza Aragon) is a Spanish footballer."


def test_backslash_line_breaks_separate_words():
    assert clean_text(AG_ROW_1) == ("reuters short sellers wall streets dwindling band of ultra cynics are seeing green again")
    assert clean_text(AG_ROW_2) == (
        "reuters private investment firm carlyle group which has a reputation for making well timed "
        "and occasionally controversial plays in the defense industry"
    )


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        # The space before a half-escaped entity is the lost "&": "Iraq #39;s" is "Iraq&#39;s".
        ("otage attacks on Iraq #39;s southern oil", "otage attacks on iraqs southern oil"),
        ("Yao #39;s 39 carries China past New Zealand", "yaos 39 carries china past new zealand"),
        ("a takeover bid  #39;genuine #39; offer", "a takeover bid genuine offer"),
        ("he said  quot;we will win quot; today", "he said we will win today"),
        ("a pound stg. 46 million ( #36;A117 million) profit", "a pound stg 46 million a117 million profit"),
        ("AT amp;T and AT&amp;T", "at t and at t"),
        ("Goldman Sachs Co. Thursday.&lt;p&gt;ADVERTISEMENT&lt;/p&gt;", "goldman sachs co thursday advertisement"),
        ("&lt;b&gt;Bold&lt;/b&gt; news", "bold news"),
    ],
)
def test_ag_news_escapes_are_repaired(raw, cleaned):
    assert clean_text(raw) == cleaned


def test_half_escaped_apostrophe_cleans_like_a_real_one():
    assert clean_text("Iraq #39;s southern oil") == clean_text("Iraq's southern oil") == "iraqs southern oil"
    assert clean_text("Don #39;t panic") == clean_text("Don't panic") == "dont panic"


def test_punctuation_and_special_characters_are_removed():
    raw = "Hello, world!!! (yes) -- 50% off @ #1 *now* _under_score e-mail U.S. $5 <i>it</i>"
    assert clean_text(raw) == "hello world yes 50 off 1 now under score e mail u s 5 it"


def test_excess_whitespace_is_collapsed():
    assert clean_text("  lots   of\t\nspace \u00a0 here  ") == "lots of space here"


def test_lowercase_is_optional():
    assert clean_text(AG_ROW_1, lowercase=False) == ("Reuters Short sellers Wall Streets dwindling band of ultra cynics are seeing green again")


def test_unicode_letters_are_kept():
    assert clean_text(DBPEDIA_ROW_2) == "rubén falcón mínguez born 8 october 1977 in zaragoza aragon is a spanish footballer"
    assert clean_text(DBPEDIA_ROW_2, lowercase=False).startswith("Rubén Falcón Mínguez born")


def test_combining_marks_stay_in_their_word():
    # DBPedia row: Bengali vowel signs are combining marks, which \w does not match.
    assert clean_text("(Bengali: বারাসাত প্যারীচরণ)") == "bengali বারাসাত প্যারীচরণ"
    assert clean_text("हिन्दी फ़िल्म") == "हिन्दी फ़िल्म"
    # A decomposed accent is composed first, so both spellings give the same word.
    assert clean_text("cafe\u0301") == clean_text("caf\u00e9") == "caf\u00e9"


@pytest.mark.parametrize("raw", ["!!!", " quot; #39; ", "&lt;br/&gt;", "\\\\ -- ..."])
def test_text_of_only_punctuation_cleans_to_empty(raw):
    assert clean_text(raw) == ""


def test_document_text_joins_title_and_body():
    assert document_text("Rubén Falcón", " Rubén Falcón Mínguez") == "Rubén Falcón Rubén Falcón Mínguez"
    assert document_text("", " body only") == "body only"


def test_spacy_tokenizes_real_sentences():
    texts = [
        clean_text(AG_ROW_1),
        clean_text("Christmas Wish is an album by Olivia Newton-John launched in 2007."),
        clean_text("I don't think we can't go, gonna win at 5pm"),
    ]
    assert tokenize(texts) == [
        ["reuters", "short", "sellers", "wall", "streets", "dwindling", "band", "of", "ultra", "cynics", "are", "seeing", "green", "again"],
        ["christmas", "wish", "is", "an", "album", "by", "olivia", "newton", "john", "launched", "in", "2007"],
        # spaCy's English exceptions split contractions and "5pm", even without the apostrophe.
        ["i", "do", "nt", "think", "we", "ca", "nt", "go", "gon", "na", "win", "at", "5", "pm"],
    ]


def test_tokenize_empty_text_gives_no_tokens():
    assert tokenize(["", "a"]) == [[], ["a"]]


DOCS = [["b", "a", "c", "a"], ["c", "a", "d"]]  # counts: a 3, c 2, b 1, d 1


def test_vocabulary_specials_first_then_frequency_with_alphabetical_ties():
    vocab = Vocabulary.build(DOCS, max_size=100, min_freq=1)
    assert SPECIAL_TOKENS == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert vocab.tokens == SPECIAL_TOKENS + ("a", "c", "b", "d")
    assert vocab.index["a"] == 4 and vocab.index["d"] == 7


def test_vocabulary_honours_min_freq():
    assert Vocabulary.build(DOCS, max_size=100, min_freq=2).tokens == SPECIAL_TOKENS + ("a", "c")
    assert Vocabulary.build(DOCS, max_size=100, min_freq=4).tokens == SPECIAL_TOKENS


def test_vocabulary_max_size_counts_the_specials():
    vocab = Vocabulary.build(DOCS, max_size=7, min_freq=1)
    assert len(vocab) == 7
    assert vocab.tokens == SPECIAL_TOKENS + ("a", "c", "b")


def test_vocabulary_is_built_from_the_given_documents_only():
    vocab = Vocabulary.build(iter(DOCS), max_size=100, min_freq=1)
    assert "zebra" not in vocab.tokens
    assert vocab.encode(["a", "zebra", "d", "<unk>"]) == [4, UNK_ID, 7, UNK_ID]


def test_special_tokens_in_documents_are_not_duplicated():
    vocab = Vocabulary.build([["<unk>", "<pad>", "x", "x"]], max_size=100, min_freq=1)
    assert vocab.tokens == SPECIAL_TOKENS + ("x",)


@pytest.mark.parametrize("max_size, min_freq, key", [(4, 1, "tokenize.max_vocab_size"), (10, 0, "tokenize.min_freq")])
def test_vocabulary_rejects_bad_limits(max_size, min_freq, key):
    with pytest.raises(ParamError, match=rf"^{key}: "):
        Vocabulary.build(DOCS, max_size=max_size, min_freq=min_freq)


def test_vocabulary_must_start_with_the_specials():
    with pytest.raises(DataError, match="must start with"):
        Vocabulary(("a", "<pad>", "<unk>", "<bos>", "<eos>"))
    with pytest.raises(DataError, match="duplicate"):
        Vocabulary(SPECIAL_TOKENS + ("a", "a"))


def test_encode_padded_truncates_pads_and_counts_oov():
    vocab = Vocabulary.build(DOCS, max_size=100, min_freq=1)  # a=4 c=5 b=6 d=7
    docs = [["a", "c", "zebra", "a", "b", "d"], ["c"], ["lion", "d"]]
    tokens, lengths, unknown, kept = encode_padded(docs, vocab, max_length=4)
    np.testing.assert_array_equal(tokens, [[4, 5, UNK_ID, 4], [5, PAD_ID, PAD_ID, PAD_ID], [UNK_ID, 7, PAD_ID, PAD_ID]])
    np.testing.assert_array_equal(lengths, [4, 1, 2])
    assert tokens.dtype == np.int32 and lengths.dtype == np.int32
    assert (unknown, kept) == (2, 7)  # "b" and "d" of row 0 were truncated, so neither counts


def test_encode_padded_width_is_the_longest_document_up_to_max_length():
    vocab = Vocabulary.build(DOCS, max_size=100, min_freq=1)
    tokens, lengths, _, _ = encode_padded([["a"], ["a", "b"]], vocab, max_length=64)
    assert tokens.shape == (2, 2)
    np.testing.assert_array_equal(lengths, [1, 2])


def test_encode_padded_rejects_zero_length():
    vocab = Vocabulary.build(DOCS, max_size=100, min_freq=1)
    with pytest.raises(ParamError, match=r"^tokenize.max_length: "):
        encode_padded([["a"]], vocab, max_length=0)
