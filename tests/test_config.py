"""params.yaml sections as validated dataclasses: every bad value is a ParamError led by its dotted key."""

import copy
import re
from pathlib import Path

import pytest

from lstm_ptq.config import DownloadParams, RemoteSource, TokenizeParams, load_params
from lstm_ptq.errors import ParamError

REPO = Path(__file__).resolve().parents[1]
SHA = "9a8c300eabb45750237fcc669f61cb8a3448f3ef6f6098e1ce340e444f6872be"

PARAMS = {
    "seed": 2025,
    "datasets": ["ag_news", "dbpedia"],
    "download": {
        "ag_news": {
            "source": "remote",
            "remote": {"url": "https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz", "sha256": SHA, "timeout_s": 60},
        },
        "dbpedia": {
            "source": "bundled",
            "bundled_test_fraction": 0.2,
            "remote": {"url": "not checked while the source is bundled", "sha256": "", "timeout_s": 0},
        },
    },
    "tokenize": {"lowercase": True, "max_vocab_size": 20000, "min_freq": 2, "max_length": 64, "valid_fraction": 0.2},
}


DELETE = object()


def edited(dotted_key: str, value: object) -> dict:
    """A copy of PARAMS with one value replaced, or removed when ``value`` is ``DELETE``."""
    params = copy.deepcopy(PARAMS)
    *parents, last = dotted_key.split(".")
    node = params
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return params


def test_valid_sections_give_exact_dataclasses():
    assert DownloadParams.from_params(PARAMS, "ag_news") == DownloadParams(
        "ag_news", "remote", RemoteSource("https://s3.amazonaws.com/fast-ai-nlp/ag_news_csv.tgz", SHA, 60.0), None, 2025
    )
    assert DownloadParams.from_params(PARAMS, "dbpedia") == DownloadParams("dbpedia", "bundled", None, 0.2, 2025)
    assert TokenizeParams.from_params(PARAMS) == TokenizeParams(True, 20000, 2, 64, 0.2, 2025)


def test_int_is_accepted_where_a_float_is_expected():
    params = edited("download.ag_news.remote.timeout_s", 5)
    remote = DownloadParams.from_params(params, "ag_news").remote
    assert remote is not None and remote.timeout_s == 5.0 and isinstance(remote.timeout_s, float)


def test_sha256_is_lowercased():
    params = edited("download.ag_news.remote.sha256", SHA.upper())
    assert DownloadParams.from_params(params, "ag_news").remote.sha256 == SHA


def test_repository_params_file_is_valid():
    params = load_params(REPO / "params.yaml")
    for dataset in params["datasets"]:
        download = DownloadParams.from_params(params, dataset)
        assert download.dataset == dataset and download.seed == params["seed"]
    assert TokenizeParams.from_params(params).max_length == params["tokenize"]["max_length"]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("download.ag_news.source", "s3", "download.ag_news.source: unknown source 's3'; expected one of ['bundled', 'remote']"),
        ("download.ag_news.source", 1, "download.ag_news.source: 1 is not a str"),
        ("download.ag_news.remote.sha256", "9a8c300e", "download.ag_news.remote.sha256: '9a8c300e' is not 64 hexadecimal digits"),
        ("download.ag_news.remote.sha256", SHA[:-1] + "g", "download.ag_news.remote.sha256: "),
        ("download.ag_news.remote.sha256", SHA + "\n", "download.ag_news.remote.sha256: "),
        ("download.ag_news.remote.url", "s3.amazonaws.com/ag_news_csv.tgz", "download.ag_news.remote.url: 's3.amazonaws.com/ag_news_csv.tgz' is not an http(s):// or file:// URL"),
        ("download.ag_news.remote.url", "ftp://example.org/a.tgz", "download.ag_news.remote.url: "),
        ("download.ag_news.remote.timeout_s", 0, "download.ag_news.remote.timeout_s: 0.0 must be a finite number > 0"),
        ("download.ag_news.remote.timeout_s", -1.5, "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", float("nan"), "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", float("inf"), "download.ag_news.remote.timeout_s: "),
        ("download.ag_news.remote.timeout_s", "60", "download.ag_news.remote.timeout_s: '60' is not a float"),
        ("download.ag_news.remote.timeout_s", True, "download.ag_news.remote.timeout_s: True is not a float"),
        ("download.ag_news.remote.url", DELETE, "download.ag_news.remote.url: missing from params.yaml"),
        ("download.ag_news.remote", DELETE, "download.ag_news.remote: missing from params.yaml"),
        ("download.ag_news.source", DELETE, "download.ag_news.source: missing from params.yaml"),
        ("download.ag_news", DELETE, "download.ag_news: missing from params.yaml"),
        ("download", DELETE, "download: missing from params.yaml"),
        ("seed", DELETE, "seed: missing from params.yaml"),
        ("seed", "2025", "seed: '2025' is not a int"),
        ("seed", 2025.0, "seed: 2025.0 is not a int"),
        ("seed", -1, "seed: -1 must be >= 0"),
    ],
)
def test_bad_download_values_name_the_dotted_key(key, value, expected):
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        DownloadParams.from_params(edited(key, value), "ag_news")


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 1.5, -0.2, True, "0.2", None])
def test_bad_bundled_test_fraction(value):
    with pytest.raises(ParamError, match=r"^download\.dbpedia\.bundled_test_fraction: "):
        DownloadParams.from_params(edited("download.dbpedia.bundled_test_fraction", value), "dbpedia")


def test_unknown_dataset():
    with pytest.raises(ParamError, match=r"^dataset: unknown dataset 'imdb'; expected one of \['ag_news', 'dbpedia'\]$"):
        DownloadParams.from_params(PARAMS, "imdb")


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("tokenize.max_length", "64", "tokenize.max_length: '64' is not a int"),
        ("tokenize.max_length", True, "tokenize.max_length: True is not a int"),
        ("tokenize.max_length", 64.0, "tokenize.max_length: 64.0 is not a int"),
        ("tokenize.max_length", 1, "tokenize.max_length: 1 must be >= 2"),
        ("tokenize.max_length", DELETE, "tokenize.max_length: missing from params.yaml"),
        ("tokenize.max_vocab_size", 4, "tokenize.max_vocab_size: 4 must be > 4 (the special tokens)"),
        ("tokenize.max_vocab_size", None, "tokenize.max_vocab_size: None is not a int"),
        ("tokenize.min_freq", 0, "tokenize.min_freq: 0 must be >= 1"),
        ("tokenize.lowercase", "yes", "tokenize.lowercase: 'yes' is not a bool"),
        ("tokenize.lowercase", 1, "tokenize.lowercase: 1 is not a bool"),
        ("tokenize.valid_fraction", 0, "tokenize.valid_fraction: 0.0 is not in (0, 1)"),
        ("tokenize.valid_fraction", 1, "tokenize.valid_fraction: 1.0 is not in (0, 1)"),
        ("tokenize.valid_fraction", float("nan"), "tokenize.valid_fraction: nan is not in (0, 1)"),
        ("tokenize.valid_fraction", "20%", "tokenize.valid_fraction: '20%' is not a float"),
        ("tokenize", DELETE, "tokenize: missing from params.yaml"),
        ("seed", True, "seed: True is not a int"),
        ("seed", -5, "seed: -5 must be >= 0"),
    ],
)
def test_bad_tokenize_values_name_the_dotted_key(key, value, expected):
    with pytest.raises(ParamError, match=f"^{re.escape(expected)}"):
        TokenizeParams.from_params(edited(key, value))


def test_load_params_errors_name_the_file(tmp_path):
    missing = tmp_path / "params.yaml"
    with pytest.raises(ParamError, match=f"^{re.escape(str(missing))}: parameter file not found$"):
        load_params(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tokenize: [unclosed\n")
    with pytest.raises(ParamError, match=f"^{re.escape(str(broken))}: not valid YAML"):
        load_params(broken)
    listed = tmp_path / "listed.yaml"
    listed.write_text("- seed\n")
    with pytest.raises(ParamError, match=f"^{re.escape(str(listed))}: expected a mapping"):
        load_params(listed)
