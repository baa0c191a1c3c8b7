"""The warm stage runner (lstm_ptq/warm.py): a stage it runs behaves as the same script run by ``python``
(its arguments, working directory, environment, streams and exit status), writes the same bytes, ends when
the stage process is killed, and a runner never serves another environment or another version of the code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_training import clone_project, small_params

from lstm_ptq import warm

REPO = Path(__file__).resolve().parents[1]

PROBE = """\
import os
import sys

from lstm_ptq import warm

warm.delegate(__file__)
print("warm" if "torch" in sys.modules else "cold", os.getcwd(), os.environ.get("PROBE_VALUE"), *sys.argv[1:], flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
if sys.argv[1] == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    import time

    time.sleep(120)
if sys.argv[1] == "masks":  # for each thread but the main one: are SIGINT, SIGTERM and SIGHUP all blocked?
    for task in sorted(os.listdir("/proc/self/task"), key=int):
        if int(task) != os.getpid():
            status = open(f"/proc/self/task/{task}/status").read().splitlines()
            blocked = int(next(line.split()[1] for line in status if line.startswith("SigBlk:")), 16)
            print("thread", task, all(blocked >> (signum - 1) & 1 for signum in (2, 15, 1)), flush=True)
    raise SystemExit(0)
raise SystemExit(int(sys.argv[1]))
"""


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    """An environment with the runner on, served by a runner of its own (a unique variable changes its key)
    that logs each stage it runs and exits soon after the test."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        warm.ENV: "1",
        warm.IDLE_ENV: "30",
        warm.LOG_ENV: str(tmp_path / "runner.log"),
        "WARM_TEST_ID": uuid.uuid4().hex,
    }


def served(env: dict[str, str]) -> list[dict]:
    log = Path(env[warm.LOG_ENV])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def ignore_forwarded_signals() -> None:
    """(preexec_fn) SIGINT, SIGTERM and SIGHUP ignored, as in a shell's background job under nohup."""
    for signum in warm._FORWARDED:
        signal.signal(signum, signal.SIG_IGN)


def default_forwarded_signals() -> None:
    """(preexec_fn) SIGINT, SIGTERM and SIGHUP at their defaults, as an interactive shell starts DVC, even
    when the test suite itself runs as a background job (which ignores SIGINT) or under nohup (SIGHUP)."""
    for signum in warm._FORWARDED:
        signal.signal(signum, signal.SIG_DFL)


def start_runner(probe: Path, env: dict[str, str], cwd: Path, ignoring_signals: bool = False) -> None:
    """Run the probe once (it starts a runner and runs cold), then wait until the runner answers;
    ``ignoring_signals``: the probe, hence the runner it starts, ignores SIGINT, SIGTERM and SIGHUP."""
    preexec = ignore_forwarded_signals if ignoring_signals else default_forwarded_signals
    first = subprocess.run([sys.executable, str(probe), "0"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, preexec_fn=preexec)
    assert first.returncode == 0 and first.stdout.startswith("cold "), first.stdout + first.stderr
    assert warm.wait_until_serving(env, timeout=180), "the warm runner did not start within 180 s"


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    return script


def test_a_served_stage_sees_its_arguments_directory_environment_streams_and_status(probe: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    start_runner(probe, runner_env, tmp_path)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, str(probe), "3", "an argument"],
        cwd=workdir,
        env={**runner_env, "DVC_STAGE": "x", "PROBE_VALUE": "v1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # PROBE_VALUE is part of the environment, so this is another runner's key: it ran cold and started one
    assert result.stdout.split() == ["cold", str(workdir), "v1", "3", "an", "argument"]
    result = subprocess.run(
        [sys.executable, str(probe), "3", "an argument"],
        cwd=workdir,
        env={**runner_env, "DVC_STAGE": "changes nothing"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout.split() == ["warm", str(workdir), "None", "3", "an", "argument"]
    assert result.stderr == "a line on stderr\n"
    assert [entry["argv"][1:] for entry in served(runner_env)] == [["3", "an argument"]]


LOADS = """\
import importlib
import sys

from lstm_ptq import warm

warm.delegate(__file__)
if sys.argv[1] != "-":
    importlib.import_module(sys.argv[1])
print("warm" if "torch" in sys.modules and warm._in_runner else "cold", warm.stage_loaded("torch"), warm.stage_loaded("brevitas"))
"""


def test_a_served_stage_knows_what_its_script_would_have_loaded(probe: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    """cli.run_stage sets torch's threads (and logs the runtime line) only in stages that load torch: a served
    stage, whose runner has every module loaded, must answer as the same script in a fresh process would."""
    start_runner(probe, runner_env, tmp_path)
    script = tmp_path / "loads.py"
    script.write_text(LOADS)
    answers = {}
    for module in ("-", "lstm_ptq.cli", "lstm_ptq.pipeline.float", "lstm_ptq.pipeline.ptq"):
        for mode in ("0", "1"):
            result = subprocess.run([sys.executable, str(script), module], env={**runner_env, warm.ENV: mode}, capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, result.stderr
            answers[module, mode] = result.stdout.split()
    assert {mode: answers["-", mode] for mode in "01"} == {"0": ["cold", "False", "False"], "1": ["warm", "False", "False"]}
    for module, loads in {"lstm_ptq.cli": ["False", "False"], "lstm_ptq.pipeline.float": ["True", "False"], "lstm_ptq.pipeline.ptq": ["True", "True"]}.items():
        assert answers[module, "0"][1:] == loads == answers[module, "1"][1:], module
        assert answers[module, "1"][0] == "warm"


def test_killing_the_stage_process_ends_its_child_in_the_runner(probe: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    start_runner(probe, runner_env, tmp_path)
    pid_file = tmp_path / "child.pid"
    client = subprocess.Popen([sys.executable, str(probe), "sleep", str(pid_file)], cwd=tmp_path, env=runner_env, stdout=subprocess.PIPE, text=True)
    assert client.stdout is not None and client.stdout.readline().startswith("warm ")
    deadline = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert child != client.pid
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and "zombie" not in Path(f"/proc/{child}/status").read_text(errors="replace"):
        assert time.monotonic() < deadline, f"the runner's child {child} outlived its stage process"
        time.sleep(0.1)


def ended(client: subprocess.Popen[str], pid_file: Path) -> str:
    """The stderr of ``client`` once it has ended; if it is still running after 30 s, fail with what the
    kernel says of it and of the process that sleeps for it (threads, wait channel, signal masks), then kill it."""
    try:
        return client.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        state = {}
        for pid in {client.pid, int(pid_file.read_text())}:
            proc = Path(f"/proc/{pid}")
            if proc.is_dir():
                status = [line for line in (proc / "status").read_text().splitlines() if line.startswith(("State", "Sig", "Shd", "Threads"))]
                state[pid] = {"wchan": (proc / "wchan").read_text(), "threads": sorted(os.listdir(proc / "task")), "status": status}
        client.kill()
        client.communicate()
        raise AssertionError(f"the stage process {client.pid} did not end within 30 s of the signal: {state}") from None


def sleeping_stage(probe: Path, env: dict[str, str], cwd: Path, pid_file: Path) -> subprocess.Popen[str]:
    """The probe started as dvc.yaml starts a stage, once it sleeps (its pid, or its runner child's, written)."""
    pid_file.unlink(missing_ok=True)
    client = subprocess.Popen(
        [sys.executable, str(probe), "sleep", str(pid_file)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_forwarded_signals,
    )
    deadline = time.monotonic() + 30
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the probe did not start sleeping"
        time.sleep(0.1)
    return client


@pytest.mark.parametrize(("signum", "runner_ignoring"), [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGHUP, True)])
def test_a_signal_ends_a_served_stage_as_it_ends_a_fresh_process(
    probe: Path, runner_env: dict[str, str], tmp_path: Path, signum: int, runner_ignoring: bool
) -> None:
    """DVC sees what it would see from ``python <script>``: death by SIGTERM or SIGHUP, or by SIGINT after
    the KeyboardInterrupt traceback, not an exit status of 1; also when the runner was started by a
    process that ignored these signals (a background job under nohup), whose dispositions the served
    stage must not inherit (a served stage slept through a forwarded SIGINT that way, in a suite run under nohup)."""
    start_runner(probe, runner_env, tmp_path, ignoring_signals=runner_ignoring)
    endings = {}
    for name, env in (("served", runner_env), ("fresh", {**runner_env, warm.ENV: "0"})):
        client = sleeping_stage(probe, env, tmp_path, tmp_path / f"{name}.pid")
        client.send_signal(signum)
        stderr = ended(client, tmp_path / f"{name}.pid")
        endings[name] = (client.returncode, "KeyboardInterrupt" in stderr)
    assert [entry["argv"][1] for entry in served(runner_env)] == ["sleep"]  # the first probe ran in the runner
    assert endings["served"] == endings["fresh"] == (-signum, signum == signal.SIGINT)


def test_a_served_stage_takes_its_signals_in_its_main_thread(probe: Path, runner_env: dict[str, str], tmp_path: Path) -> None:
    """Python runs signal handlers in the main thread only, and a signal the kernel hands to another thread
    does not wake the main thread from a sleep or a read: the runner child's watcher thread blocks the
    signals a stage process forwards, so that a forwarded SIGINT interrupts the stage where it waits."""
    start_runner(probe, runner_env, tmp_path)
    result = subprocess.run([sys.executable, str(probe), "masks"], cwd=tmp_path, env=runner_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("warm "), result.stdout + result.stderr
    threads = [line.split() for line in result.stdout.splitlines() if line.startswith("thread ")]
    assert threads, "the served stage has no thread besides its main one (the client watcher is missing)"
    assert [blocked for _, _, blocked in threads] == ["True"] * len(threads), threads


def test_the_runner_key_follows_the_environment_and_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PATH": "/bin", "PYTHONHASHSEED": "0"}
    key = warm.runner_key(env)
    assert warm.runner_key({**env, "PWD": "/x", "OLDPWD": "/y", "SHLVL": "3", "_": "dvc", "DVC_ROOT": "/r"}) == key
    assert warm.runner_key({**env, "PYTHONHASHSEED": "1"}) != key
    assert warm.runner_key({**env, "BREVITAS_JIT": "1"}) != key
    state = warm._package_state()
    monkeypatch.setattr(warm, "_package_state", lambda: [*state[:-1], (state[-1][0], state[-1][1] + 1, state[-1][2])])
    assert warm.runner_key(env) != key  # a module edited since the runner started


def test_a_runpy_load_of_a_stage_script_is_never_handed_to_a_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warm.ENV, "1")
    warm.delegate(str(REPO / "stages" / "quantize.py"))  # returns: this process is pytest, not that script


def test_stages_run_by_the_runner_write_the_bytes_of_stages_run_by_python(small_ag_news: Path, runner_env: dict[str, str], probe: Path, tmp_path: Path) -> None:
    params = small_params()
    params["grid"].update({"datasets": ["ag_news"], "bit_widths": [3]})
    params["calibration"]["batch_size"] = 32
    params["final_layer"].update({"batch_size": 64, "documents": 100, "error_batches": 2})
    stages = [
        ("train", "discriminative"),
        ("evaluate", "discriminative"),
        ("calibration_sets", "discriminative"),
        ("activation_ranges", "discriminative", "class_conditional"),
        ("quantize", "discriminative", "3"),
        ("calibrate", "discriminative", "3", "class_conditional"),
    ]
    start_runner(probe, runner_env, tmp_path)
    outputs = {}
    for mode in ("1", "0"):  # served first, while the runner is fresh
        root = clone_project(small_ag_news, tmp_path / f"warm{mode}", params)
        for name, *items in stages:
            command = [sys.executable, str(REPO / "stages" / f"{name}.py"), "ag_news", *items, "--params", str(root / "params.yaml"), "--root", str(root)]
            result = subprocess.run(command, cwd=REPO, env={**runner_env, warm.ENV: mode}, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{name} (warm={mode}): {result.stderr[-2000:]}"
        outputs[mode] = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).parts[0] != ".cache"}
    assert [entry["argv"][0].rsplit("/", 1)[-1] for entry in served(runner_env)] == [f"{name}.py" for name, *_ in stages]
    assert sorted(outputs["1"]) == sorted(outputs["0"]) and len(outputs["0"]) > 10
    different = [name for name in outputs["0"] if outputs["0"][name] != outputs["1"][name]]
    assert different == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (warm.ENV, "maybe", "LSTM_PTQ_WARM='maybe': expected 1 or 0"),
        (warm.IDLE_ENV, "soon", "LSTM_PTQ_WARM_IDLE='soon': expected a number of seconds > 0"),
        (warm.IDLE_ENV, "-5", "LSTM_PTQ_WARM_IDLE='-5': expected a number of seconds > 0"),
    ],
)
def test_a_bad_runner_setting_stops_the_stage_with_an_error_naming_it(
    probe: Path, runner_env: dict[str, str], tmp_path: Path, name: str, value: str, message: str
) -> None:
    result = subprocess.run([sys.executable, str(probe), "0"], cwd=tmp_path, env={**runner_env, name: value}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"error: {message}" + (" (the warm stage runner on or off)\n" if name == warm.ENV else "\n")
    assert not list(warm.socket_path("x").parent.glob(f"{warm.runner_key({**runner_env, name: value})}*"))  # no runner started
