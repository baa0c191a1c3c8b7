"""dvc.yaml is generated, and every stage declares exactly the params keys and package code its script reads.

The keys are checked against DVC's own reading of dvc.yaml (its resolved stages), independently of the
generator's templating: for every concrete stage, its script's ``read_settings`` runs on a recording view
of params.yaml with the stage's own argv, and the recorded keys must equal the declared ones.
"""

from __future__ import annotations

import runpy
import shlex
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import generate_dvc_yaml as generator  # noqa: E402

from lstm_ptq.cli import stage_inputs  # noqa: E402
from lstm_ptq.errors import ParamError  # noqa: E402
from lstm_ptq.fingerprints import fingerprint_path, imported_sources, stage_code  # noqa: E402
from lstm_ptq.settings import ReadRecorder, load_params, minimal_reads  # noqa: E402


@cache
def generated_files() -> dict[str, str]:
    return generator.generate()


def generated() -> str:
    """The root dvc.yaml (the large stage families, the noise-trained variant and each tree have files of their own)."""
    return generated_files()[generator.ROOT_FILE]


def all_stages() -> dict[str, Any]:
    """Every stage definition of every generated dvc.yaml, by name."""
    return {name: stage for text in generated_files().values() for name, stage in yaml.safe_load(text)["stages"].items()}


def resolve(project: Path) -> dict[str, tuple[str, list[str]]]:
    """Every concrete stage of the project's dvc.yaml files as DVC resolves them: name -> (cmd, declared params keys)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return declared_params(repo)


def declared_params(repo: Any) -> dict[str, tuple[str, list[str]]]:
    from dvc.dependency.param import ParamsDependency

    return {
        stage.name: (stage.cmd, sorted(key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params)) for stage in repo.index.stages
    }


@cache
def resolved_repo() -> tuple[dict[str, tuple[str, list[str]]], list[str]]:
    """The repository as DVC resolves it, read once for the tests that need it: every concrete stage (as
    :func:`resolve`), and the stages that no stage of the root dvc.yaml depends on, directly or not."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo, warnings.catch_warnings():
        stages = declared_params(repo)
        warnings.filterwarnings("ignore", "_NoneStep.value", DeprecationWarning)  # DVC's own graph code, once per stage
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        needed = {stage for stage in graph if stage.path_in_repo == generator.ROOT_FILE}
        for stage in list(needed):
            needed |= nx.descendants(graph, stage)
        assert any(stage.path_in_repo.startswith("variants/") for stage in needed)
        return stages, sorted(stage.addressing for stage in graph if stage not in needed)


def resolved_stages() -> dict[str, tuple[str, list[str]]]:
    return resolved_repo()[0]


@cache
def stage_module(script: str) -> dict[str, Any]:
    return runpy.run_path(str(REPO / script), run_name="stage_module")


def read_keys(cmd: str, params: dict[str, Any]) -> list[str]:
    """The params keys the stage command's ``read_settings`` reads (through its tree's view, if any)."""
    argv = shlex.split(cmd)
    assert argv[0] == "python" and argv[1].startswith("stages/"), cmd
    module = stage_module(argv[1])
    recorder = ReadRecorder(params)
    args = module["parser"].parse_args(argv[2:])
    view, _ = stage_inputs(args, recorder)
    module["read_settings"](args, view)
    return minimal_reads(recorder.reads)


def key_mismatch(declared: list[str], read: list[str]) -> tuple[list[str], list[str]]:
    """(read but not declared, declared but not read)."""
    return sorted(set(read) - set(declared)), sorted(set(declared) - set(read))


def axis_pairs(params: dict[str, Any], tree: str | None = None) -> list[tuple[str, str]]:
    """(dataset, model type) pairs of the main grid, or of a tree's (its own lists where it sets them)."""
    grid = {**params["grid"], **(((params["trees"][tree].get("params") or {}).get("grid") or {}) if tree else {})}
    return [(d, m) for d in grid["datasets"] for m in grid["model_types"]]


def test_committed_dvc_yaml_files_are_the_generators_output() -> None:
    files = generated_files()
    params = load_params(REPO / "params.yaml")
    trees = {f"variants/{name}/dvc.yaml" for name in [*params["trees"], "noise_trained"]}
    # every family has a file per dataset and model type; every tree here reruns quantize, activation ranges and calibrate
    families = {f"pipelines/{f}-{d}-{m}/dvc.yaml" for f in ("quantize", "activation_ranges", "calibrate", "noise_quantized") for d, m in axis_pairs(params)}
    for name in params["trees"]:
        families |= {f"pipelines/{name}_{f}-{d}-{m}/dvc.yaml" for f in ("quantize", "activation_ranges", "calibrate") for d, m in axis_pairs(params, name)}
    assert set(files) == {"dvc.yaml", *families, *trees}
    for path, text in files.items():
        assert (REPO / path).read_text(encoding="utf-8") == text, f"{path} is out of date: run `./run python scripts/generate_dvc_yaml.py`"
    assert generator.stale_files(files) == []


def test_the_calibrate_family_has_a_dvc_yaml_per_dataset_and_model_type_with_unchanged_stage_names() -> None:
    """Each file fixes dataset and model type to one value and iterates params.yaml's bit widths and schemes
    (a tree's own lists where it sets them), so `-S grid.bit_widths=...` needs no regeneration and every
    cell keeps its name, calibrate@<dataset>-<model_type>-<bits>-<scheme>."""
    files = generated_files()
    params = load_params(REPO / "params.yaml")
    for dataset, model_type in axis_pairs(params):
        stages = yaml.safe_load(files[f"pipelines/calibrate-{dataset}-{model_type}/dvc.yaml"])["stages"]
        assert list(stages) == ["calibrate"]
        assert stages["calibrate"]["matrix"] == {
            "dataset": [dataset],
            "model_type": [model_type],
            "bit_width": "${grid.bit_widths}",
            "scheme": "${grid.calibration_schemes}",
        }
    for tree in params["trees"]:
        for dataset, model_type in axis_pairs(params, tree):
            stages = yaml.safe_load(files[f"pipelines/{tree}_calibrate-{dataset}-{model_type}/dvc.yaml"])["stages"]
            assert stages[f"{tree}_calibrate"]["matrix"]["dataset"] == [dataset] and stages[f"{tree}_calibrate"]["wdir"] == "../.."
    # the resolved cells: every (dataset, model type, bits, scheme) of the main grid once, by its usual name
    names = [name for name in resolved_stages() if name.startswith("calibrate@")]
    grid = params["grid"]
    expected = [
        f"calibrate@{d}-{m}-{b}-{s}" for d in grid["datasets"] for m in grid["model_types"] for b in grid["bit_widths"] for s in grid["calibration_schemes"]
    ]
    assert sorted(names) == sorted(expected)


def test_a_grid_of_one_model_type_generates_its_pipeline_and_only_the_findings_stage_refuses_it(tmp_path: Path) -> None:
    """A smaller study (one model type, one dataset) still gets its dvc.yaml files, with calibrate files for
    that grid only; the findings stage, which compares the two model types, fails naming the key."""
    params = load_params(REPO / "params.yaml")
    params["grid"].update({"datasets": ["dbpedia"], "model_types": ["discriminative"], "noise_trained_datasets": ["dbpedia"]})
    params["trees"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    files = generator.generate(tmp_path / "params.yaml")
    assert sorted(path for path in files if path.startswith("pipelines/calibrate-")) == ["pipelines/calibrate-dbpedia-discriminative/dvc.yaml"]
    module = stage_module("stages/findings.py")
    args = module["parser"].parse_args([])
    settings = module["read_settings"](args, params)
    with pytest.raises(ParamError, match=r"grid\.model_types: \['discriminative'\]; the findings compare both model types"):
        module["main"](args, settings)


def test_each_tree_keeps_its_stages_in_its_own_dvc_yaml_run_from_the_root(tmp_path: Path) -> None:
    """Its own dvc.yaml, so its own dvc.lock; its stages run from the repository root and read params.yaml there;
    a tree that leaves params.yaml takes its dvc.yaml and dvc.lock with it."""
    files = generated_files()
    for name in load_params(REPO / "params.yaml")["trees"]:
        document = yaml.safe_load(files[f"variants/{name}/dvc.yaml"])
        assert document["vars"] == ["../../params.yaml"]
        assert document["stages"] and all(stage["wdir"] == "../.." and name in stage["cmd"] for stage in document["stages"].values())
        assert not any(stage_name.startswith(f"{name}_") for stage_name in yaml.safe_load(files["dvc.yaml"])["stages"])
    gone = tmp_path / "variants/old_tree"
    gone.mkdir(parents=True)
    (gone / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    (gone / "dvc.lock").write_text("schema: '2.0'\n", encoding="utf-8")
    generator.write_files({"dvc.yaml": "stages: {}\n"}, tmp_path)
    assert sorted(p.name for p in gone.iterdir()) == [] and (tmp_path / "dvc.yaml").is_file()


def test_a_stage_moved_to_another_dvc_yaml_keeps_its_lock_entry_and_nothing_reruns(tmp_path: Path) -> None:
    """A project whose stages all lived in the root dvc.yaml (as before the families got files of their own):
    regenerating moves each lock entry beside the file that now defines its stage, byte for byte, and DVC
    finds every stage up to date. An entry of a stage no file defines stays where it was."""

    def dvc(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    make = {"matrix": {"n": [1, 2]}, "cmd": "cp input.txt out_${item.n}.txt", "deps": ["input.txt"], "outs": ["out_${item.n}.txt"]}
    keep = {"cmd": "cp input.txt kept.txt", "deps": ["input.txt"], "outs": ["kept.txt"]}
    (tmp_path / "input.txt").write_text("x\n", encoding="utf-8")
    dvc("init", "--no-scm", "-q")
    generator.write_files({"dvc.yaml": yaml.safe_dump({"stages": {"make": make, "keep": keep}})}, tmp_path)
    dvc("repro")
    before = yaml.safe_load((tmp_path / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    before["retired"] = before["keep"]
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": before}), encoding="utf-8")
    files = {
        "dvc.yaml": yaml.safe_dump({"stages": {"keep": keep}}),
        "pipelines/make/dvc.yaml": yaml.safe_dump({"stages": {"make": {"wdir": "../..", **make}}}),
    }
    generator.write_files(files, tmp_path)
    root = yaml.safe_load((tmp_path / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    moved = yaml.safe_load((tmp_path / "pipelines/make/dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert set(root) == {"keep", "retired"} and moved == {k: before[k] for k in ("make@1", "make@2")}
    assert "up to date" in dvc("status")
    assert "Running stage" not in dvc("repro", "--all-pipelines")
    assert generator.migrate_locks(files, tmp_path) == []  # a second run finds nothing to move


def test_a_split_familys_lock_entries_go_to_the_lock_of_the_file_that_fixes_their_items(tmp_path: Path) -> None:
    """A family split over several files (one per fixed leading matrix value, as calibrate is per dataset and
    model type): each lock entry moves beside the file whose one-value lists its name starts with; a value
    that is a prefix of another ("a" of "a_b") does not take the other's entries."""

    def part(value: str) -> str:
        stage = {"wdir": "../..", "matrix": {"part": [value], "n": [1, 2]}, "cmd": "echo ${item.part} ${item.n}", "outs": ["out_${item.part}_${item.n}"]}
        return yaml.safe_dump({"stages": {"make": stage}}, sort_keys=False)

    entries = {f"make@{value}-{n}": {"cmd": f"echo {value} {n}"} for value in ("a", "a_b") for n in (1, 2)}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {**entries, "gone": {"cmd": "x"}}}), encoding="utf-8")
    files = {"dvc.yaml": "stages: {}\n", "pipelines/make-a/dvc.yaml": part("a"), "pipelines/make-a_b/dvc.yaml": part("a_b")}
    generator.write_files(files, tmp_path)

    def lock(path: str) -> dict[str, Any]:
        return yaml.safe_load((tmp_path / path).read_text(encoding="utf-8"))["stages"]

    assert lock("pipelines/make-a/dvc.lock") == {k: entries[k] for k in ("make@a-1", "make@a-2")}
    assert lock("pipelines/make-a_b/dvc.lock") == {k: entries[k] for k in ("make@a_b-1", "make@a_b-2")}
    assert lock("dvc.lock") == {"gone": {"cmd": "x"}}


def test_every_stage_feeds_a_stage_of_the_root_dvc_yaml() -> None:
    """`dvc exp run` and a bare `dvc repro` start from the root dvc.yaml and take what its stages depend on:
    a stage of another file (a family, the noise-trained variant, a tree) that no root stage needs would be
    skipped by them. Every one is upstream of a report."""
    assert resolved_repo()[1] == []


def undeclared_or_unread(stages: dict[str, tuple[str, list[str]]], params: dict[str, Any]) -> dict[str, Any]:
    problems = {}
    for name, (cmd, declared) in stages.items():
        if name == "fingerprints":
            assert declared == []
            continue
        undeclared, unread = key_mismatch(declared, read_keys(cmd, params))
        if undeclared or unread:
            problems[name] = {"read but not declared": undeclared, "declared but not read": unread}
    return problems


def test_every_resolved_stage_declares_exactly_the_keys_its_code_reads() -> None:
    stages = resolved_stages()
    assert len(stages) > 250  # the whole grid, both trees
    assert undeclared_or_unread(stages, load_params(REPO / "params.yaml")) == {}


def test_a_tree_in_params_gets_its_stages_with_their_own_keys_paths_and_axes(tmp_path: Path) -> None:
    """Two trees of params.yaml (another seed from training on; a wider LSTM cell state on the main tree's
    float models) become stages that DVC resolves, each declaring exactly what its code reads."""
    params = load_params(REPO / "params.yaml")
    params["trees"] = {
        "seed_b": {"rerun_from": "train", "params": {"seed": 7, "grid": {"bit_widths": [4, 3]}}},
        "wide": {"rerun_from": "calibration_sets", "params": {"quantization": {"cell_state_bit_width": 16}, "grid": {"bit_widths": [3]}}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    files = generator.generate(tmp_path / "params.yaml")
    generator.write_files(files, tmp_path)
    text = "".join(files.values())
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    stages = resolve(tmp_path)
    assert undeclared_or_unread(stages, params) == {}

    def cells(prefix: str) -> set[str]:
        return {name.split("@")[1] for name in stages if name.startswith(prefix + "@")}

    assert cells("seed_b_train") == cells("train") and cells("seed_b_evaluate") == cells("evaluate")
    assert cells("seed_b_calibrate") == {c for c in cells("calibrate") if c.split("-")[2] in {"4", "3"}}
    assert "wide_train" not in text and "wide_evaluate" not in text  # it reuses the main tree's float models
    # a tree runs no noise stage (no report reads a tree's noise curves); the noise-trained variant does
    assert not any(name.startswith(("seed_b_noise", "wide_noise")) for name in stages)
    assert cells("noise_train_noise_quantized") and cells("noise_quantized")
    assert cells("wide_calibrate") == {c for c in cells("calibrate") if c.split("-")[2] == "3"}
    cmd, declared = stages["wide_calibrate@ag_news-generative-3-class_conditional"]
    assert cmd.endswith("--tree wide") and "trees.wide.params" in declared and "trees.wide.rerun_from" in declared
    assert "quantization.act_high_percentile" in declared  # not overridden: read from the file
    assert "quantization.cell_state_bit_width" not in declared  # overridden: editing the file's value leaves the tree as it is
    _, declared = stages["seed_b_train@ag_news-generative"]
    assert "trees.seed_b.params" in declared and "seed" not in declared
    document = {name: stage for t in files.values() for name, stage in yaml.safe_load(t)["stages"].items()}
    wide_deps = document["wide_calibrate"]["deps"]
    assert "models/float/${item.dataset}/${item.model_type}" in wide_deps and "data/tokenized/${item.dataset}" in wide_deps
    assert "variants/wide/data/calibration/${item.dataset}/${item.model_type}" in wide_deps
    seed_deps = document["seed_b_calibrate"]["deps"]
    assert "variants/seed_b/models/float/${item.dataset}/${item.model_type}" in seed_deps and "data/tokenized/${item.dataset}" in seed_deps
    assert document["seed_b_calibrate"]["matrix"]["bit_width"] == "${trees.seed_b.params.grid.bit_widths}"
    assert all(o.startswith("variants/") for stage in ("seed_b_train", "wide_calibrate") for o in map(out_path, document[stage]["outs"]))


def out_path(out: str | dict[str, Any]) -> str:
    return out if isinstance(out, str) else next(iter(out))


def test_the_key_check_fails_when_a_declared_key_is_removed_or_added() -> None:
    params = load_params(REPO / "params.yaml")
    cmd, declared = resolved_stages()["calibrate@ag_news-generative-3-class_conditional"]
    read = read_keys(cmd, params)
    assert "quantization.cell_state_bit_width" in declared and key_mismatch(declared, read) == ([], [])
    without = [k for k in declared if k != "quantization.cell_state_bit_width"]
    assert key_mismatch(without, read) == (["quantization.cell_state_bit_width"], [])
    assert key_mismatch(declared + ["noise.levels"], read) == ([], ["noise.levels"])


def test_the_fingerprinted_code_is_what_a_real_import_of_the_script_loads() -> None:
    """The static import analysis behind every fingerprint agrees with what importing the script loads."""
    probe = (
        "import runpy, sys\n"
        "runpy.run_path('stages/calibrate.py', run_name='stage_module')\n"
        "print('\\n'.join(m.__file__ for n, m in list(sys.modules.items()) if n.startswith('lstm_ptq') and getattr(m, '__file__', None)))\n"
    )
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "BREVITAS_JIT": "0"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    imported = {Path(line).resolve().relative_to(REPO).as_posix() for line in out.splitlines() if line.endswith(".py")}
    assert imported_sources(REPO, "stages/calibrate.py") == imported
    code = stage_code(REPO, "stages/calibrate.py")
    assert "src/lstm_ptq/quantization/refine.py" in code and "stages/calibrate.py" in code
    assert "src/lstm_ptq/plots.py" not in code  # a cell stage does not rerun when a figure changes
    deps = all_stages()["calibrate"]["deps"]
    assert deps[0] == "fingerprints/calibrate.sha256" and not any(d.startswith(("src/", "stages/")) for d in deps)


def test_every_stage_script_has_its_fingerprint_and_every_stage_depends_on_it() -> None:
    document = all_stages()
    written = [next(iter(out)) for out in document["fingerprints"]["outs"]]
    scripts = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "stages").glob("*.py") if p.name != "fingerprints.py")
    assert written == [fingerprint_path(Path("."), s).as_posix() for s in scripts]
    for name, stage in document.items():
        if name != "fingerprints":
            script = stage["cmd"].split()[1]
            assert fingerprint_path(Path("."), script).as_posix() in stage["deps"], name


@pytest.mark.parametrize("stage", [s for s in generator.VARIANT.stages])
def test_variant_stages_run_the_main_script_on_the_variant_tree(stage: str) -> None:
    stages = all_stages()
    base, variant = stages[stage], stages[generator.VARIANT.name(stage)]
    assert variant["cmd"].split()[:2] == base["cmd"].split()[:2] and variant["cmd"].endswith("--root variants/noise_trained")
    code = lambda entry: [d for d in entry["deps"] if d.startswith("fingerprints/")]  # noqa: E731
    assert code(variant) == code(base)
    assert variant["params"] == [p.replace("${item.model_type}", "generative") for p in base.get("params", [])]
    assert all(d.startswith(("fingerprints/", "variants/noise_trained/")) for d in variant["deps"])


def test_only_the_summary_is_a_dvc_metric() -> None:
    document = yaml.safe_load(generated())
    assert document["metrics"] == ["metrics/summary.json"]
    assert all("metrics" not in stage for stage in all_stages().values())
