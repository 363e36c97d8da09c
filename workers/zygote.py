"""The zygote: a process that imports everything a worker needs, then forks workers.

A worker forked from here shares the interpreter's and the modules' pages
with the zygote and with every other worker, instead of importing them
again (the baseline measured ~18 MiB saved per worker, and 0.25 s of start-up
CPU). It is safe because the zygote never opens an nng socket (pynng only
refuses to run in a child after the parent *used* nng), and its one other
thread, the reaper, holds no lock the child could need.

Protocol on the control link: the supervisor sends ``{"cmd": "fork", "id",
"role", "spec"}`` (role "worker" or "api") with the new child's control socket
attached (SCM_RIGHTS); the
zygote answers ``{"event": "forked", "id", "pid"}`` and later
``{"event": "exited", "pid", "status"}``.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from layotto.components import registry
from layotto.workers import child
from layotto.workers import main as worker_main

log = logging.getLogger("layotto.zygote")


def preload(types: Iterable[tuple[str, str]] | None = None) -> None:
    """Import the backends of these (kind, type) pairs (all of them when
    None) and the API process's code now, so forked children share it.
    Importing grpc starts no thread and initialises nothing (checked: a child
    forked after the import serves gRPC). A zygote preloads only its
    generation's types: redis-py alone is ~10 MiB that a config without Redis
    never needs; a type it did not preload still works, imported after the fork."""
    wanted = registry.TYPES.values() if types is None else [registry.TYPES[t] for t in types]
    for spec in wanted:
        importlib.import_module(spec.factory.split(":")[0])
    # Imported lazily by workers.blocks (they build on it): here, once for all.
    importlib.import_module("layotto.workers.config_block")
    importlib.import_module("layotto.workers.pubsub_block")
    importlib.import_module("layotto.api.main")
    # grpc imports these only when the first server or channel is made
    # (the API process, the pub/sub worker's AppCallback client).
    importlib.import_module("grpc._server")
    importlib.import_module("grpc._channel")
    importlib.import_module("grpc._simple_stubs")
    gc.collect()
    gc.freeze()  # keep the shared objects out of the collector's writes


class Zygote:
    def __init__(self, link: child.ControlLink, sock: socket.socket) -> None:
        self.link = link
        self.sock = sock
        self.fds: list[int] = []
        self.children = threading.Semaphore(0)

    def serve(self) -> int:
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        self.link.send({"event": "ready", "pid": os.getpid()})
        log.info("ready to fork workers and the API process (%d modules loaded)", len(sys.modules))
        buffer = b""
        while True:
            data, fds, _, _ = socket.recv_fds(self.sock, 65536, 16)
            if not data:
                return 0  # the supervisor is gone
            self.fds.extend(fds)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("cmd") == "fork":
                    self._fork(message)

    def _fork(self, message: dict[str, Any]) -> None:
        fd = self.fds.pop(0)
        pid = os.fork()
        if pid == 0:
            os._exit(self._run_child(message.get("role", "worker"), message["spec"], fd))
        os.close(fd)
        self.children.release()
        self.link.send({"event": "forked", "id": message["id"], "pid": pid})

    def _run_child(self, role: str, spec: dict[str, Any], fd: int) -> int:
        """In the forked child: become the worker or the API process."""
        try:
            self.sock.close()
            for other in self.fds:  # control sockets of children not forked yet
                os.close(other)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            link = child.ControlLink(socket.socket(fileno=fd))
            level = spec.get("log_level", "INFO")
            if role == "api":
                from layotto.api.main import ApiProcess

                child.setup_logging(f"api gen {spec.get('generation', 0)}", level, force=True)
                code = ApiProcess(spec, link).run()
            else:
                child.setup_logging(f"worker {spec['name']}#{spec['slot']}", level, force=True)
                code = worker_main.run(spec, link)
        except BaseException:
            traceback.print_exc()
            code = 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        return code

    def _reap(self) -> None:
        """Report each worker's exit status (only the parent can collect it)."""
        while True:
            self.children.acquire()
            pid, status = os.wait()
            self.link.send(
                {"event": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)}
            )


def run(spec: dict[str, Any], sock: socket.socket, force_logging: bool = False) -> int:
    level = spec.get("log_level", "INFO")
    child.setup_logging(f"zygote gen {spec.get('generation', 0)}", level, force=force_logging)
    child.ignore_terminal_signals()
    types = spec.get("types")
    preload(None if types is None else [(kind, type_) for kind, type_ in types])
    return Zygote(child.ControlLink(sock), sock).serve()


def main() -> None:
    sock = socket.socket(fileno=int(os.environ[child.CONTROL_FD_ENV]))
    sys.exit(run(child.load_spec(), sock))


if __name__ == "__main__":
    main()
