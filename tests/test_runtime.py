"""The ``runtime`` section: torch threads and device, from params.yaml or the environment, and why it is
declared for no stage: scoring gives the same bytes on 1 and 2 threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lstm_ptq.datasets import DATASETS
from lstm_ptq.errors import ParamError
from lstm_ptq.evaluation import float_scorer, score_split
from lstm_ptq.models import build_model
from lstm_ptq.preprocess import load_split, load_vocabulary
from lstm_ptq.runtime import DEVICE_ENV, THREADS_ENV, RuntimeSettings, apply_runtime, resolve_device
from lstm_ptq.settings import ModelSettings, TrainSettings, load_params
from lstm_ptq.training import model_config, train_model

REPO = Path(__file__).resolve().parents[1]


def runtime_params(**runtime: object) -> dict:
    return {"runtime": {"num_threads": 2, "device": "cpu", **runtime}}


def test_params_give_the_settings_and_the_environment_overrides_them() -> None:
    assert RuntimeSettings.from_params(load_params(REPO / "params.yaml"), environ={}) == RuntimeSettings(2, "cpu")
    assert RuntimeSettings.from_params(runtime_params(), environ={THREADS_ENV: "1", DEVICE_ENV: "auto"}) == RuntimeSettings(1, "auto")


@pytest.mark.parametrize(
    ("params", "environ", "message"),
    [
        (runtime_params(num_threads=0), {}, "runtime.num_threads: 0 must be an integer >= 1"),
        (runtime_params(num_threads=True), {}, "runtime.num_threads: True must be"),
        (runtime_params(), {THREADS_ENV: "two"}, f"{THREADS_ENV}='two' (overrides runtime.num_threads) is not an integer"),
        (runtime_params(), {THREADS_ENV: "0"}, f"{THREADS_ENV} (overrides runtime.num_threads): 0 must be"),
        (runtime_params(device="gpu"), {}, "runtime.device: 'gpu' is not one of ['auto', 'cpu', 'cuda']"),
        (runtime_params(), {DEVICE_ENV: "tpu"}, f"{DEVICE_ENV} (overrides runtime.device): 'tpu' is not one of"),
        ({"runtime": {"device": "cpu"}}, {}, "runtime.num_threads: missing from params.yaml"),
        ({}, {}, "runtime: missing from params.yaml"),
    ],
)
def test_a_bad_value_names_its_key_or_variable(params: dict, environ: dict, message: str) -> None:
    with pytest.raises(ParamError) as error:
        RuntimeSettings.from_params(params, environ=environ)
    assert message in str(error.value)


def test_auto_is_cuda_only_where_a_gpu_is_seen_and_cuda_without_one_is_an_error() -> None:
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(ParamError, match=r"^runtime.device: 'cuda', but torch sees no CUDA device"):
        resolve_device("cuda", cuda_available=False)


def test_apply_sets_the_threads_and_resolves_auto_on_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        assert apply_runtime(RuntimeSettings(2, "auto"), environ={}) == (2, expected)
        assert apply_runtime(RuntimeSettings(1, "cpu"), environ={}) == (1, "cpu")
    finally:
        torch.set_default_device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for a machine without a GPU")
@pytest.mark.parametrize(
    ("runtime", "environ", "message"),
    [({"device": "cuda"}, {}, "runtime.device: 'cuda'"), ({}, {DEVICE_ENV: "cuda"}, f"{DEVICE_ENV} (overrides runtime.device): 'cuda'")],
)
def test_a_stage_asked_for_cuda_without_a_gpu_stops_before_writing(tmp_path: Path, runtime: dict, environ: dict, message: str) -> None:
    params = load_params(REPO / "params.yaml")
    params["runtime"].update(runtime)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k not in (THREADS_ENV, DEVICE_ENV)}, **environ}
    argv = [sys.executable, str(REPO / "stages/evaluate.py"), "dbpedia", "discriminative", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"error: {message}, but torch sees no CUDA device" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_scoring_does_not_depend_on_the_thread_count(small_ag_news: Path, model_type: str) -> None:
    """Why ``runtime.num_threads`` is declared for no stage: the same scores, to the byte, on 1 and 2 threads.
    The generative model's V-way softmax (vocabulary 3,000) is large enough for torch to split its
    reductions and matrix products between threads. (Training is not covered: see lstm_ptq.runtime.)"""
    tokenized = small_ag_news / "data/tokenized/ag_news"
    train, valid = load_split(tokenized, "train"), load_split(tokenized, "valid")
    config = model_config(ModelSettings(32, 32, 1, 16), model_type, len(load_vocabulary(tokenized)), DATASETS["ag_news"].num_classes)
    result = train_model(
        config, TrainSettings(32, 1e-3, 1, 1, 5.0, seed=5, num_threads=1, bucket_batches=4, train_accuracy_rows=50), train, valid, progress=False
    )
    model = build_model(config)
    model.load_state_dict(result.state_dict)
    scores = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        scores.append(score_split(float_scorer(model.eval()), valid))
    np.testing.assert_array_equal(scores[0], scores[1])
