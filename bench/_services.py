"""The processes the benches start: redis-server, the sidecar, the baseline, the load.

Every process is started in its own session (so a Ctrl-C in the terminal
reaches only the bench, which then stops them in order) and with a parent-death
signal (SIGTERM when the bench dies without cleaning up), and is tracked in
``Processes`` so that ``stop_all`` ends exactly the processes we started.

redis-server and free ports are the tests' (tests/redis_server.py), started
the way above. The sidecar launcher is the bench's own rather than
tests/sidecar.py's: that module imports grpc, and the bench process must not
(state_bench.py and upgrade_bench.py read the sidecar's PSS, which a bench
process mapping grpc's libraries would lower); and the bench times every log
line, runs another commit's code (``--against``), and checks that no child
outlives the supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import _procfs

REPO = Path(__file__).resolve().parent.parent
# `python bench/x.py` puts bench/ first on sys.path, not the repository's top,
# where the `tests` package is (pytest puts it first too).
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

from tests.redis_server import free_port, running_redis  # noqa: E402

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
LAYOTTO = str(Path(sys.executable).parent / "layotto")

# util-linux's setpriv sets the parent-death signal and then execs the command
# (same pid), so a bench killed with SIGKILL still takes its children along.
# (A preexec_fn would do the same but is unsafe with the reader threads.)
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM"] if _SETPRIV else []


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start from the main thread (the death signal follows the spawning thread)."""
    return subprocess.Popen([*_DIE_WITH_PARENT, *args], start_new_session=True, **kwargs)


def _alive(pid: int) -> bool:
    return _procfs.parent_of(pid) is not None


class LineReader:
    """Drains a child's output on a thread, keeping (monotonic time, line) pairs."""

    def __init__(self, stream: Any, keep: bool = True) -> None:
        self.lines: list[tuple[float, str]] = []
        self._keep = keep
        self._changed = threading.Condition()
        self._done = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            now = time.monotonic()
            with self._changed:
                if self._keep:
                    self.lines.append((now, line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> tuple[float, str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for at, line in self.lines[after:]:
                    if regex.search(line):
                        return at, line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._done:
                    tail = "\n".join(line for _, line in self.lines[-25:])
                    raise RuntimeError(f"no line matching {pattern!r}; last lines:\n{tail}")
                self._changed.wait(min(remaining, 0.5))


class Processes:
    """Everything the bench started, stopped in reverse order by ``stop_all``."""

    def __init__(self) -> None:
        self.stoppers: list[tuple[str, Any]] = []

    def add(self, name: str, stopper: Any) -> None:
        self.stoppers.append((name, stopper))

    def remove(self, stopper: Any) -> None:
        self.stoppers = [(n, s) for n, s in self.stoppers if s is not stopper]

    def stop_all(self) -> None:
        while self.stoppers:
            name, stopper = self.stoppers.pop()
            try:
                stopper.stop()
            except Exception as exc:
                print(f"warning: stopping {name} failed: {exc!r}", file=sys.stderr)


def _terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class RedisServer:
    """The tests' private redis-server (tests/redis_server.py), started by ``spawn``."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.server = self._stack.enter_context(running_redis(launch=spawn))

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def stop(self) -> None:
        self._stack.close()


# Top-level folders that the installed package maps to layotto.<name>.
_PACKAGE_DIRS = ("supervisor", "workers", "api", "components", "proto", "configs")


def source_tree(ref: str, directory: str) -> tuple[str, str]:
    """The code of git ``ref`` laid out as the ``layotto`` namespace under
    ``directory``. Returns the directory to put first on PYTHONPATH (there it
    shadows the installed, editable package in every process) and the
    checkout itself (for its configs)."""
    src = os.path.join(directory, "src")
    os.makedirs(src)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    namespace = os.path.join(directory, "tree", "layotto")
    os.makedirs(namespace)
    for name in _PACKAGE_DIRS:
        os.symlink(os.path.join(src, name), os.path.join(namespace, name))
    return os.path.dirname(namespace), src


class Sidecar:
    """The real ``layotto start -c CONFIG`` on private ports; with ``code``
    (a PYTHONPATH from ``source_tree``) the sidecar of another commit.

    The sidecar's run directory (control socket, pid file) is derived from the
    config file's path: sidecars that run side by side need a config file each.
    """

    def __init__(
        self, config: str, env: dict[str, str] | None = None, code: str | None = None
    ) -> None:
        # Its own copy of the config (same name): a sidecar is found through its
        # file's path, so two on one file would be one, and one on a shipped
        # config would meet a developer's `layotto start`.
        directory = tempfile.mkdtemp(prefix="layotto-bench-sidecar-")
        weakref.finalize(self, shutil.rmtree, directory, True)
        self.config = shutil.copy(REPO / config, directory)
        self.launcher = [LAYOTTO] if code is None else [PYTHON, "-m", "layotto.supervisor.cli"]
        self.command = [*self.launcher, "start", "-c", self.config]
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            {
                "LAYOTTO_GRPC_PORT": str(self.grpc_port),
                "LAYOTTO_HTTP_PORT": str(self.http_port),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if code is not None:
            self.env["PYTHONPATH"] = code
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.output: LineReader | None = None
        self.known_children: set[int] = set()
        self.exec_to_ready_s = 0.0
        self.reported_ready_s: float | None = None
        self.stop_s: float | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60) -> None:
        began = time.monotonic()
        self.process = spawn(
            self.command,
            env=self.env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.output = LineReader(self.process.stderr)
        at, line = self.output.wait_for(r"layotto ready in", timeout)
        self.exec_to_ready_s = at - began
        found = re.search(r"ready in ([\d.]+) s", line)
        self.reported_ready_s = float(found.group(1)) if found else None
        self.children()

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``layotto ARGS -c CONFIG`` of this sidecar's code, in its environment."""
        return subprocess.run(
            [*self.launcher, *args, "-c", self.config],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def children(self) -> list[int]:
        """Every process of the sidecar but the supervisor (its whole tree:
        workers and the API process are forked by the zygote)."""
        pids = _procfs.descendants_of(self.pid)
        self.known_children.update(pids)
        return pids

    def roles(self) -> dict[str, list[int]]:
        """supervisor / api / zygote / workers, from the log prefixes (a forked
        child keeps the zygote's command line)."""
        names = self.names()
        groups: dict[str, list[int]] = {
            "supervisor": [self.pid],
            "api": [],
            "zygote": [],
            "workers": [],
        }
        for pid in self.children():
            name = names.get(pid) or _procfs.cmdline(pid)
            if name.startswith("api") or "layotto.api" in name:
                groups["api"].append(pid)
            elif "zygote" in name:
                groups["zygote"].append(pid)
            else:
                groups["workers"].append(pid)
        return groups

    def names(self) -> dict[int, str]:
        """pid -> "api" / "worker state_demo#0" from the children's log prefixes."""
        assert self.output is not None
        found: dict[int, str] = {self.pid: "supervisor"}
        for _, line in self.output.lines:
            match = re.search(r"\[((?:api|worker|zygote)[^\]]*?) pid (\d+)\]", line)
            if match:
                found[int(match.group(2))] = match.group(1)
        return found

    def stop(self, timeout: float = 40) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.children()
            began = time.monotonic()
            _terminate(self.process, timeout)
            self.stop_s = time.monotonic() - began
        # The supervisor stops its children; make sure none outlived it.
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in self.known_children) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.known_children:
            if _alive(pid) and "layotto" in _procfs.cmdline(pid):
                print(
                    f"warning: sidecar child {pid} outlived the supervisor; killing it",
                    file=sys.stderr,
                )
                os.kill(pid, signal.SIGKILL)


class Baseline:
    def __init__(self, redis_address: str) -> None:
        self.port = free_port()
        began = time.monotonic()
        self.process = spawn(
            [PYTHON, str(BENCH / "_baseline_server.py"), str(self.port), redis_address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"baseline server did not start (said {line!r})")
        self.exec_to_ready_s = time.monotonic() - began

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        _terminate(self.process, 10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class Load:
    """The load-generator process (bench/_load.py)."""

    def __init__(self) -> None:
        self.process = spawn(
            [PYTHON, str(BENCH / "_load.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited ({self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # EOF: it exits by itself
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _terminate(self.process, 5)
        if self.process.stdout is not None:
            self.process.stdout.close()
