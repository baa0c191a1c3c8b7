"""A sweep of queued experiments run two at a time: ``dvc exp run --queue -S seed=...`` twice, then
``dvc exp run --run-all -j 2`` (which starts two queue workers, as ``dvc queue start -j 2`` does, and waits
for them) with ``LSTM_PTQ_THREADS`` set, the way a user keeps workers x threads within the cores without
editing params.yaml. The test sets 2 threads, not the 1 a user would pick for ``-j 2`` on two cores, because
the test environment already defaults torch to 1 thread (``OMP_NUM_THREADS=1``, tests/dvc_project.py): only
a value other than the default shows that the variable reached the queue workers' stage processes. The stage
logs show that every torch stage of both experiments started on it, and each experiment's commit holds its
own seed and model.
"""

from __future__ import annotations

import pytest
import yaml
from dvc_project import DvcProject, snapshot_project
from test_run_cache import small_profile

pytestmark = pytest.mark.slow

TARGET = "evaluate@dbpedia-discriminative"
TRAIN = "train@dbpedia-discriminative"
SEEDS = (11, 12)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[DvcProject, str]:
    snapshot = snapshot_project(tmp_path_factory.mktemp("snapshot") / "project")
    project = DvcProject.create(tmp_path_factory.mktemp("queue"), snapshot)
    params = small_profile(project.params())
    project.set_profile(params)
    project.run("git", "commit", "-q", "-am", "small profile")
    for seed in SEEDS:
        project.dvc("exp", "run", "--queue", "--name", f"seed-{seed}", "-S", f"seed={seed}", TARGET)
    project.env["LSTM_PTQ_THREADS"] = "2"
    output = project.dvc("exp", "run", "--run-all", "-j", "2")
    return project, output


def test_both_experiments_finish_with_their_own_seed_and_model(swept: tuple[DvcProject, str]) -> None:
    project, _ = swept
    models = {}
    for seed in SEEDS:
        ref = project.run("git", "for-each-ref", "--format=%(refname)", f"refs/exps/**/seed-{seed}").split()
        assert len(ref) == 1, ref
        lock = yaml.safe_load(project.run("git", "show", f"{ref[0]}:dvc.lock"))
        train = lock["stages"][TRAIN]
        assert train["params"]["params.yaml"]["seed"] == seed
        models[seed] = next(out["md5"] for out in train["outs"] if out["path"].startswith("models/float/"))
    assert len(set(models.values())) == len(SEEDS)  # two seeds, two trainings


def test_every_torch_stage_ran_on_the_environments_thread_count(swept: tuple[DvcProject, str]) -> None:
    _, output = swept
    lines = [line for line in output.splitlines() if line.startswith("runtime: ")]
    # train and evaluate in each experiment (fingerprints, download and tokenize never load torch);
    # training then switches to its own, tracked train.num_threads (1 in the small profile)
    assert lines == ["runtime: 2 torch threads, device cpu"] * 2 * len(SEEDS), output
