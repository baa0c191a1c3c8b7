"""A warm stage runner: stage processes that skip PyTorch's and Brevitas' import.

A stage process spends about 4 s of its start importing PyTorch, Brevitas, scipy and pandas before it
does any work, and a study runs hundreds of stages. With ``LSTM_PTQ_WARM=1`` (``./run`` sets it) the
first stage that starts spawns a runner process that imports those once and then waits on a Unix socket.
Every later stage script (``python stages/<name>.py ...``, as dvc.yaml runs it) calls :func:`delegate`
first thing: it hands the runner its arguments, working directory, environment and standard streams,
the runner forks a child that runs the script exactly as ``python`` would (``runpy``, ``__name__ ==
"__main__"``), and the stage process exits with the child's status. The child is a copy of a process
that has only imported modules, so it computes what a fresh process computes (the tests compare output
bytes); only the imports are skipped.

A runner serves one environment and one version of the code: its socket's name is a hash of the Python
executable and its flags, the environment (except the variables that change from stage to stage:
``PWD``, ``OLDPWD``, ``SHLVL``, ``_`` and DVC's ``DVC_*``) and the size and modification time of every
module of this package. Edit a module, change a variable or switch the virtual environment and the next
stage starts a new runner instead of reusing one with stale code; the old one exits when it has been
idle for :data:`IDLE_SECONDS`. Where no runner answers, :func:`delegate` returns and the stage runs in
its own process as before, so the runner is only ever a speed-up. ``LSTM_PTQ_WARM=0`` (or unset) turns
it off.

If the stage process is interrupted or killed, its child notices the closed connection and ends too.
"""

from __future__ import annotations

import array
import builtins
import hashlib
import importlib.util
import json
import os
import runpy
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path

from .errors import ParamError

ENV = "LSTM_PTQ_WARM"
IDLE_ENV = "LSTM_PTQ_WARM_IDLE"  # seconds a runner waits for a request before it exits
LOG_ENV = "LSTM_PTQ_WARM_LOG"  # a file the runner appends each stage it runs to (its pid, argv)
IDLE_SECONDS = 120.0
STARTING_SECONDS = 60.0  # a runner still importing after this long is taken for dead
# Variables that differ between the stages of one `dvc repro` without changing what a stage imports.
VOLATILE_ENV = ("PWD", "OLDPWD", "SHLVL", "_")
VOLATILE_PREFIXES = ("DVC_",)
# What the runner imports before it waits: everything the stage scripts import that is slow to import.
PRELOAD = (
    "torch",
    "brevitas",
    "lstm_ptq.pipeline.data",
    "lstm_ptq.pipeline.float",
    "lstm_ptq.pipeline.ptq",
    "lstm_ptq.pipeline.noise",
    "lstm_ptq.pipeline.analysis",
    "lstm_ptq.pipeline.reports",
    "lstm_ptq.pipeline.findings",
    "scipy.stats",
    "pandas",
)
_HEADER = struct.Struct("!I")
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what a stage process passes on to its runner child
_in_runner = False  # True in a runner's child, which runs the stage script itself
# The imports made in the runner and in a served stage, each attributed to the module whose top-level code
# was running (importer -> imported), even when the imported module was loaded already: a served stage asks
# which modules its script would have loaded in a fresh process (stage_loaded).
_imports: dict[str, set[str]] = {}
_builtin_import = builtins.__import__


def _running_module() -> str | None:
    """The module whose top-level code is executing (the innermost ``<module>`` frame), if any."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return frame.f_globals.get("__name__")
        frame = frame.f_back
    return None


def _record(importer: str, absolute: str, fromlist: tuple = ()) -> None:
    """``importer`` imported ``absolute``: that module, its parent packages and the submodules named in ``fromlist``."""
    parts = absolute.split(".")
    edges = _imports.setdefault(importer, set())
    edges.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    edges.update(f"{absolute}.{item}" for item in fromlist or () if f"{absolute}.{item}" in sys.modules)


def _recording_import(name: str, globals: Mapping | None = None, locals: Mapping | None = None, fromlist: tuple = (), level: int = 0):  # noqa: A002
    module = _builtin_import(name, globals, locals, fromlist, level)
    importer = _running_module()
    if importer is not None:
        try:
            absolute = importlib.util.resolve_name("." * level + name, (globals or {}).get("__package__")) if level else name
        except (ImportError, ValueError):
            return module
        _record(importer, absolute, fromlist)
    return module


_builtin_import_module = importlib.import_module


def _recording_import_module(name: str, package: str | None = None):
    module = _builtin_import_module(name, package)
    importer = _running_module()
    if importer is not None:
        _record(importer, module.__name__)
    return module


def stage_loaded(module: str) -> bool:
    """Whether ``module`` is loaded by now in a stage process of its own; in a served stage, whether its
    script would have loaded it by now run by ``python``: the closure of the imports made under the
    script's top-level code, over the imports recorded when the runner loaded each module. (Served, the
    first call also stops the recording.)"""
    if not _in_runner:
        return module in sys.modules
    builtins.__import__, importlib.import_module = _builtin_import, _builtin_import_module
    seen, todo = set(), ["__main__"]
    while todo:
        for name in _imports.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return module in seen


_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False, "": False}


def enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """``LSTM_PTQ_WARM`` as a switch; a value that is neither on nor off is a ParamError naming it."""
    value = environ.get(ENV, "0")
    if value.strip().lower() not in _SWITCH:
        raise ParamError(f"{ENV}={value!r}: expected 1 or 0 (the warm stage runner on or off)")
    return _SWITCH[value.strip().lower()]


def idle_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """``LSTM_PTQ_WARM_IDLE``: how long a runner waits for a stage before it exits (default :data:`IDLE_SECONDS`)."""
    value = environ.get(IDLE_ENV)
    if value is None:
        return IDLE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ParamError(f"{IDLE_ENV}={value!r}: expected a number of seconds > 0")
    return seconds


def _package_state() -> list[tuple[str, int, int]]:
    root = Path(__file__).resolve().parent
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*.py"))


def runner_key(environ: Mapping[str, str] = os.environ) -> str:
    """The hash that names a runner: interpreter, its flags, the stable environment, this package's modules."""
    env = {k: v for k, v in environ.items() if k not in VOLATILE_ENV and not k.startswith(VOLATILE_PREFIXES)}
    state = [sys.executable, sys.version, repr(sys.flags), sorted(env.items()), _package_state()]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:24]


def socket_path(key: str) -> Path:
    """``<tmp>/lstm-ptq-warm-<uid>/<key>.sock``, in a directory only this user can enter."""
    folder = Path(tempfile.gettempdir()) / f"lstm-ptq-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder}: not a private directory of this user; remove it")
    return folder / f"{key}.sock"


def wait_until_serving(environ: Mapping[str, str], timeout: float) -> bool:
    """Wait until a runner for ``environ`` answers (its socket is in place); False after ``timeout`` seconds."""
    path = socket_path(runner_key(environ))
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return chunks


def delegate(script: str) -> None:
    """Run this stage script in a warm runner and exit with its status, if the runner is enabled and one
    answers; otherwise start one for the next stage (in the background) and return, so the script runs here."""
    if _in_runner or not _is_main(script):
        return
    try:
        if not enabled():
            return
        idle_seconds()  # checked here, where the error is seen: the runner's own streams go nowhere
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        key = runner_key()
        path = socket_path(key)
    except OSError:
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError as exc:
        conn.close()
        if isinstance(exc, ConnectionRefusedError):
            path.unlink(missing_ok=True)  # the name of a runner that was killed: nobody listens there
        _spawn_runner(path)
        return
    request = {
        "script": str(Path(script).resolve()),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        # what this process ignores (as its parent, DVC or a shell's background job, left it): the child
        # takes these dispositions rather than the runner's, which come from whatever process started it
        "ignored_signals": [int(signum) for signum in _FORWARDED if signal.getsignal(signum) == signal.SIG_IGN],
    }
    try:
        payload = json.dumps(request).encode()
        socket.send_fds(conn, [_HEADER.pack(len(payload)) + payload], [0, 1, 2])
        (child,) = struct.unpack("!i", _recv_exact(conn, 4))
    except OSError:
        conn.close()
        return  # the runner went away before it took the stage: run it here

    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    try:
        (status,) = struct.unpack("!i", _recv_exact(conn, 4))
    except ConnectionError:
        if forwarded:  # the child died of the signal this process passed on: die of it too
            status = -forwarded[-1]
        else:
            print(f"error: the stage's process in the warm runner ({child}) ended without a status (killed?)", file=sys.stderr)
            status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if status < 0:  # ended by signal -status, as `python <script>` would have been (DVC reports it so)
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    os._exit(status)


def _is_main(script: str) -> bool:
    """Whether ``script`` is what this process runs as ``__main__`` (not a script a test loads with runpy)."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    return main is not None and Path(main).resolve() == Path(script).resolve()


def _spawn_runner(path: Path) -> None:
    """Start ``python -m lstm_ptq.warm <socket>`` detached from this process (its own session, no streams),
    unless another stage started one less than a minute ago (``<socket>.starting``) that is still importing."""
    marker = path.with_name(path.name + ".starting")
    try:
        if time.time() - marker.stat().st_mtime < STARTING_SECONDS:
            return
        marker.unlink()
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return  # another stage is starting one right now
    try:
        subprocess.Popen(
            [sys.executable, "-m", "lstm_ptq.warm", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",  # holds no project folder open
        )
    except OSError:
        pass


def _watch_client(conn: socket.socket) -> None:
    """In the child: end this process when the stage process at the other end of ``conn`` is gone."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os._exit(1)


def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage process the request describes, run its script, report the status."""
    global _in_runner
    _in_runner = True
    status = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ignored = set(request.get("ignored_signals", ()))
        for signum in _FORWARDED:  # as `python <script>` started by the stage process's parent would have them
            if signum in ignored:
                signal.signal(signum, signal.SIG_IGN)
            else:
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        sys.path[0] = str(Path(request["script"]).parent)  # as `python <script>` sets it
        conn.sendall(struct.pack("!i", os.getpid()))  # the stage process forwards its signals here
        # The watcher thread starts with the forwarded signals blocked, so that the kernel delivers them to
        # the main thread, as in a fresh `python <script>`: Python runs its handlers (SIGINT's
        # KeyboardInterrupt) only in the main thread, and a signal taken by another thread does not wake
        # the main thread from a blocking call (a sleep, a read) until that call returns by itself.
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        _imports.pop("__main__", None)  # the runner's own __main__ (the -m launcher) is not the stage
        try:
            runpy.run_path(request["script"], run_name="__main__")
            status = 0
        except SystemExit as exc:
            if exc.code is None:
                status = 0
            elif isinstance(exc.code, int):
                status = exc.code & 0xFF  # as the OS reports `sys.exit(-1)`: 255; a negative status means a signal
            else:
                print(exc.code, file=sys.stderr)
                status = 1
        except KeyboardInterrupt:  # an uncaught one ends `python` by SIGINT, after the traceback
            traceback.print_exc()
            status = -signal.SIGINT
        except BaseException:
            traceback.print_exc()
            status = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        try:
            conn.sendall(struct.pack("!i", status))
        except OSError:
            pass
        os._exit(status if status >= 0 else 1)


def serve(path: Path) -> None:
    """Import :data:`PRELOAD`, then fork a child per request on ``path`` until idle for ``LSTM_PTQ_WARM_IDLE``
    seconds (default :data:`IDLE_SECONDS`)."""
    idle = idle_seconds()
    log = os.environ.get(LOG_ENV)

    builtins.__import__, importlib.import_module = _recording_import, _recording_import_module  # the import graph (stage_loaded)
    for name in PRELOAD:  # (called from here, not from a module's top level: recorded as this runner's own)
        _recording_import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    listener.bind(str(staging))
    listener.listen(16)
    os.replace(staging, path)  # two runners started at once: the last one takes the name, the other idles out
    path.with_name(path.name + ".starting").unlink(missing_ok=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                break
            try:
                conn.settimeout(10)
                fds_array = array.array("i")
                header, ancillary, _, _ = conn.recvmsg(_HEADER.size, socket.CMSG_SPACE(3 * fds_array.itemsize))
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds_array.frombytes(data[: len(data) - len(data) % fds_array.itemsize])
                (size,) = _HEADER.unpack(header)
                request = json.loads(_recv_exact(conn, size))
                conn.settimeout(None)
                fds = list(fds_array)
                child = os.fork()
                if child == 0:
                    listener.close()
                    _run_child(conn, request, fds)
                if log is not None:
                    with open(log, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps({"pid": child, "argv": request["argv"], "cwd": request["cwd"]}) + "\n")
                for fd in fds:
                    os.close(fd)
            except (OSError, ValueError, struct.error):
                pass
            finally:
                conn.close()
    finally:
        listener.close()
        if not _answers(path):  # still our name (another runner may have taken it since): remove it
            path.unlink(missing_ok=True)


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


if __name__ == "__main__":
    # Serve from the package's module, not this `-m` copy of it: the stage scripts import lstm_ptq.warm, and
    # its children must see that module's _in_runner flag set, or delegate() would hand the stage on again.
    from lstm_ptq.warm import serve as _serve

    _serve(Path(sys.argv[1]))
