"""The zygote: a process that imports everything a worker needs, then forks workers.

A worker forked from here shares the interpreter's and the modules' pages
with the zygote and with every other worker, instead of importing them
again (the baseline measured ~18 MiB saved per worker, and 0.25 s of start-up
CPU). It is safe because the zygote never opens an nng socket (pynng only
refuses to run in a child after the parent *used* nng), and its one other
thread, the reaper, holds no lock the child could need.

Protocol on the control link: the supervisor sends ``{"cmd": "fork", "id",
"spec"}`` (a worker's or an API process's spec, ``boundary.specs``) with the
new child's control socket attached (SCM_RIGHTS); the zygote answers
``{"event": "forked", "id", "pid"}`` and later ``{"event": "exited", "pid",
"status"}``. The child runs the role module its spec names.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from layotto.boundary import child
from layotto.boundary.control_link import ControlLink, LineDecoder, read_first_message
from layotto.boundary.specs import ZygoteSpec, spec_from_json
from layotto.components import registry

log = logging.getLogger("layotto.zygote")


def preload(
    types: Iterable[tuple[str, str]] | None = None, roles: Iterable[str] = ZygoteSpec.roles
) -> None:
    """Import the backends of these (kind, type) pairs (all of them when
    None) and the role modules of the children now, so forked children share it.
    Importing grpc starts no thread and initialises nothing (checked: a child
    forked after the import serves gRPC). A zygote preloads only its
    generation's types: redis-py alone is ~10 MiB that a config without Redis
    never needs; a type it did not preload still works, imported after the fork."""
    wanted = registry.TYPES.values() if types is None else [registry.TYPES[t] for t in types]
    for spec in wanted:
        importlib.import_module(spec.factory.split(":")[0])
    # Blocks (workers/block_table.py imports them all): here, once for all.
    importlib.import_module("layotto.workers.config_block")
    importlib.import_module("layotto.workers.pubsub_block")
    for module in roles:
        importlib.import_module(module)
    # grpc imports these only when the first server or channel is made
    # (the API process, the pub/sub worker's AppCallback client).
    importlib.import_module("grpc._server")
    importlib.import_module("grpc._channel")
    importlib.import_module("grpc._simple_stubs")
    gc.collect()
    gc.freeze()  # keep the shared objects out of the collector's writes


class Zygote:
    def __init__(self, link: ControlLink, sock: socket.socket) -> None:
        self.link = link
        self.sock = sock
        self.fds: list[int] = []
        self.children = threading.Semaphore(0)

    def serve(self) -> int:
        threading.Thread(target=self._reap, name="reaper", daemon=True).start()
        self.link.send({"event": "ready", "pid": os.getpid()})
        log.info("ready to fork workers and the API process (%d modules loaded)", len(sys.modules))
        decoder = LineDecoder("zygote's control link")
        while True:
            data, fds, _, _ = socket.recv_fds(self.sock, 65536, 16)
            if not data:
                return 0  # the supervisor is gone
            self.fds.extend(fds)
            for message in decoder.feed(data):
                if message.get("cmd") == "fork":
                    self._fork(message)

    def _fork(self, message: dict[str, Any]) -> None:
        fd = self.fds.pop(0)
        pid = os.fork()
        if pid == 0:
            os._exit(self._run_child(message["spec"], fd))
        os.close(fd)
        self.children.release()
        self.link.send({"event": "forked", "id": message["id"], "pid": pid})

    def _run_child(self, spec_json: dict[str, Any], fd: int) -> int:
        """In the forked child: become the worker or the API process."""
        try:
            self.sock.close()
            for other in self.fds:  # control sockets of children not forked yet
                os.close(other)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            link = ControlLink(socket.socket(fileno=fd))
            spec = spec_from_json(spec_json)
            child.setup_logging(spec.label, spec.log_level, force=True)
            role = importlib.import_module(spec.module)  # preloaded: already imported
            code = int(role.run(spec, link))
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


def run(spec: ZygoteSpec, sock: socket.socket, force_logging: bool = False) -> int:
    child.setup_logging(spec.label, spec.log_level, force=force_logging)
    child.ignore_terminal_signals()
    preload(spec.types, spec.roles)
    return Zygote(ControlLink(sock), sock).serve()


def run_prefork(spec_json: dict[str, Any], sock: socket.socket) -> int:
    """Entry of the zygote the supervisor forks itself (see supervisor/processes.py)."""
    spec = spec_from_json(spec_json)
    assert isinstance(spec, ZygoteSpec)
    return run(spec, sock, force_logging=True)


def main() -> None:
    sock = child.control_socket_from_env()
    spec = spec_from_json(read_first_message(sock))
    assert isinstance(spec, ZygoteSpec)
    sys.exit(run(spec, sock))


if __name__ == "__main__":
    main()
