"""Torch threads and device, from the environment (lstm_ptq.runtime), and why they are not study settings:
scoring gives the same bytes on 1 and 2 threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lstm_ptq.datasets import DATASETS
from lstm_ptq.errors import ParamError
from lstm_ptq.evaluation import float_scorer, score_split
from lstm_ptq.models import build_model
from lstm_ptq.preprocess import load_split, load_vocabulary
from lstm_ptq.runtime import DEVICE_ENV, THREADS_ENV, RuntimeSettings, apply_runtime, resolve_device
from lstm_ptq.settings import ModelSettings, TrainSettings, load_params
from lstm_ptq.training import model_config, train_model

REPO = Path(__file__).resolve().parents[1]


def test_the_environment_gives_the_settings_and_unset_means_torch_default_on_the_cpu() -> None:
    assert RuntimeSettings.from_environ({}) == RuntimeSettings(None, "cpu")
    assert RuntimeSettings.from_environ({THREADS_ENV: "1", DEVICE_ENV: "auto"}) == RuntimeSettings(1, "auto")
    assert RuntimeSettings.from_environ({DEVICE_ENV: "cuda"}) == RuntimeSettings(None, "cuda")


def test_params_yaml_has_no_runtime_section() -> None:
    """Threads and device describe the machine, not the study: no params key holds them, so none is undeclared."""
    assert "runtime" not in load_params(REPO / "params.yaml")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({THREADS_ENV: "two"}, f"{THREADS_ENV}='two' is not an integer"),
        ({THREADS_ENV: "0"}, f"{THREADS_ENV}=0 must be an integer >= 1"),
        ({DEVICE_ENV: "gpu"}, f"{DEVICE_ENV}='gpu' is not one of ['auto', 'cpu', 'cuda']"),
        ({DEVICE_ENV: ""}, f"{DEVICE_ENV}='' is not one of"),
    ],
)
def test_a_bad_value_names_its_variable(environ: dict, message: str) -> None:
    with pytest.raises(ParamError) as error:
        RuntimeSettings.from_environ(environ)
    assert message in str(error.value)


def test_auto_is_cuda_only_where_a_gpu_is_seen_and_cuda_without_one_is_an_error() -> None:
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    with pytest.raises(ParamError, match=rf"^{DEVICE_ENV}='cuda', but torch sees no CUDA device"):
        resolve_device("cuda", cuda_available=False)


def test_apply_sets_the_threads_and_resolves_auto_on_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    before = torch.get_num_threads()
    try:
        assert apply_runtime(RuntimeSettings(2, "auto")) == (2, expected)
        assert apply_runtime(RuntimeSettings(1, "cpu")) == (1, "cpu")
        assert apply_runtime(RuntimeSettings(None, "cpu")) == (1, "cpu")  # unset: left as it was
    finally:
        torch.set_default_device("cpu")
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for a machine without a GPU")
def test_a_stage_asked_for_cuda_without_a_gpu_stops_before_writing(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if k not in (THREADS_ENV, DEVICE_ENV)}, DEVICE_ENV: "cuda"}
    argv = [sys.executable, str(REPO / "stages/evaluate.py"), "dbpedia", "discriminative", "--params", str(REPO / "params.yaml"), "--root", str(tmp_path)]
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert f"error: {DEVICE_ENV}='cuda', but torch sees no CUDA device" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model_type", ["discriminative", "generative"])
def test_scoring_does_not_depend_on_the_thread_count(small_ag_news: Path, model_type: str) -> None:
    """Why ``LSTM_PTQ_THREADS`` is not a tracked param: the same scores, to the byte, on 1 and 2 threads.
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


_TRAIN_CHILD = """
import resource, sys
import numpy as np, torch
from lstm_ptq.datasets import DATASETS
from lstm_ptq.preprocess import load_split, load_vocabulary
from lstm_ptq.settings import ModelSettings, TrainSettings
from lstm_ptq.training import model_config, train_model
tokenized, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
train, valid = load_split(tokenized, "train"), load_split(tokenized, "valid")
config = model_config(ModelSettings(32, 32, 1, 16), "generative", len(load_vocabulary(tokenized)), DATASETS["ag_news"].num_classes)
settings = TrainSettings(128, 1e-3, 1, 1, 5.0, seed=5, num_threads=1, bucket_batches=1, train_accuracy_rows=50)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
result = train_model(config, settings, train.subset(np.arange(512)), valid.subset(np.arange(50)), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
torch.save(result.state_dict, out)
"""


def test_run_keeps_freed_memory_in_the_process_and_training_gives_the_same_bytes(small_ag_news: Path, tmp_path: Path) -> None:
    """``./run`` sets GLIBC_TUNABLES so that glibc keeps freed blocks instead of unmapping every one over
    32 MiB (a training batch's vocabulary logits) and faulting it back in zeroed. Batches of 128 documents
    over a 3,000-word vocabulary make blocks of that size here: far fewer page faults, the same weights."""
    bare = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    printed = subprocess.run(
        [str(REPO / "run"), "python", "-c", "import os; print(os.environ['GLIBC_TUNABLES'])"], env=bare, capture_output=True, text=True, check=True
    )
    tunables = printed.stdout.strip()
    assert "glibc.malloc.mmap_max=0" in tunables and "glibc.malloc.trim_threshold=" in tunables
    tokenized = str(small_ag_news / "data/tokenized/ag_news")
    faults, weights = [], []
    for env in (bare, {**bare, "GLIBC_TUNABLES": tunables}):
        out = tmp_path / f"model{len(weights)}.pt"
        child = subprocess.run([sys.executable, "-c", _TRAIN_CHILD, tokenized, str(out)], env=env, capture_output=True, text=True)
        assert child.returncode == 0, child.stderr
        faults.append(int(child.stdout.split()[-1]))
        weights.append(torch.load(out, weights_only=True))
    assert faults[1] < faults[0] / 2, faults
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
