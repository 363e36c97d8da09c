"""Run the real `layotto` command for end-to-end tests.

Readiness and other milestones are awaited by watching the supervisor's log
lines (an event), never by sleeping.
"""

from __future__ import annotations

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc

from layotto.boundary.config import default_run_dir
from layotto.proto import runtime_pb2_grpc
from tests.redis_server import free_port

LAYOTTO = str(Path(sys.executable).parent / "layotto")
REPO = Path(__file__).resolve().parent.parent


class Sidecar:
    """The real `layotto start` on free ports, from its own copy of ``config``.

    A sidecar is found through its config file's path (the run directory is
    keyed by it), so two sidecars on one file would be one: the copy keeps
    tests apart from each other and from a developer's `layotto start`. A
    test that edits the config (to reload) edits ``sidecar.config``.
    """

    def __init__(self, config: str | Path, env: dict[str, str] | None = None) -> None:
        directory = tempfile.mkdtemp(prefix="layotto-test-")
        self.config = shutil.copy(config, directory)  # same file name: tests look at it
        # files the config names relative to its directory (secret_demo's secrets file)
        for sibling in Path(config).parent.glob("*.json"):
            shutil.copy(sibling, directory)
        # with what a killed supervisor leaves behind where the CLI looks for it
        weakref.finalize(self, _remove_trees, directory, default_run_dir(self.config))
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            {
                "LAYOTTO_GRPC_PORT": str(self.grpc_port),
                "LAYOTTO_HTTP_PORT": str(self.http_port),
                "PYTHONUNBUFFERED": "1",
                # standalone.yaml's localstorage binding: files of this sidecar only
                "LAYOTTO_BINDINGS_ROOT": os.path.join(directory, "bindings"),
            }
        )
        self.env.update(env or {})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def cli(
        self, *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `layotto <args> -c <config>`, in the sidecar's environment unless ``env``."""
        return subprocess.run(
            [LAYOTTO, *args, "-c", self.config],
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def launch(self) -> None:
        """Start `layotto start` without waiting for readiness."""
        self.process = subprocess.Popen(
            [LAYOTTO, "start", "-c", self.config],
            env=self.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def start(self, timeout: float = 30) -> None:
        self.launch()
        self.wait_for_log(r"layotto ready in", timeout)

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        try:
            for line in self.process.stderr:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        except (ValueError, OSError):
            pass  # the pipe was closed by kill() while children still held it
        with self._changed:
            self._changed.notify_all()

    def wait_for_log(self, pattern: str, timeout: float = 20, after: int = 0) -> str:
        """Wait until a log line matching ``pattern`` appears (from line ``after`` on)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                exited = self.process is not None and self.process.poll() is not None
                if remaining <= 0 or (exited):
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no log line matching {pattern!r}; last lines:\n{tail}")
                self._changed.wait(min(remaining, 0.5))

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    @contextmanager
    def stub(self) -> Iterator[runtime_pb2_grpc.RuntimeStub]:
        with grpc.insecure_channel(self.target) as channel:
            yield runtime_pb2_grpc.RuntimeStub(channel)

    def children(self) -> list[int]:
        """Every process below the supervisor (workers are the zygote's children)."""
        assert self.process is not None
        found: list[int] = []
        parents = [self.process.pid]
        while parents:
            out = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", ",".join(map(str, parents))],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            parents = [int(p) for p in out.split()]
            found += parents
        return found

    def api_processes(self) -> dict[str, int]:
        """Every API process in `layotto status`: name -> pid."""
        rows = [line.split() for line in self.cli("status").stdout.splitlines()]
        return {cells[0]: int(cells[2]) for cells in rows if cells and cells[0].startswith("api@")}

    def serving_api(self) -> tuple[str, int]:
        """The API process that holds the most gRPC connections (the
        reuseport group's member 0 takes every new one): name and pid."""
        deadline = time.monotonic() + 10
        while True:  # clients reconnect at their connection age: none held for a moment
            apis = self.api_processes()
            held = {name: _established(pid, self.grpc_port) for name, pid in apis.items()}
            name = max(held, key=lambda n: held[n])
            if held[name] > 0:
                return name, apis[name]
            assert time.monotonic() < deadline, f"no API process holds a gRPC connection: {held}"

    def stop(self, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the supervisor if it still runs, and release the log pipe."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _established(pid: int, port: int) -> int:
    """Established TCP connections process ``pid`` holds on local ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                cells = line.split()
                if int(cells[1].rsplit(":", 1)[1], 16) == port and cells[3] == "01":
                    inodes.add(f"socket:[{cells[9]}]")
    fds = f"/proc/{pid}/fd"
    held = 0
    for fd in os.listdir(fds):
        try:
            held += os.readlink(os.path.join(fds, fd)) in inodes
        except OSError:
            continue
    return held


def _remove_trees(*paths: str) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_sidecar(
    config: str | Path, env: dict[str, str] | None = None, timeout: float = 30
) -> Iterator[Sidecar]:
    sidecar = Sidecar(config, env)
    try:
        sidecar.start(timeout)
        yield sidecar
    except BaseException:
        # pytest shows captured output of a failed test: include the sidecar's log
        print(
            "\n".join(["--- sidecar log (last 80 lines) ---", *sidecar.lines[-80:]]),
            file=sys.stderr,
        )
        raise
    finally:
        try:
            sidecar.stop()
        finally:
            sidecar.kill()
