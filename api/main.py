"""Entry point of the API process: gRPC in front, one WorkerPool per component."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from typing import Any

from layotto.api.nng_client import WorkerPool
from layotto.api.server import build_handlers, start_server
from layotto.supervisor.config import Config
from layotto.workers import child
from layotto.workers.protocol import EXIT_CONFIG, worker_address

log = logging.getLogger("layotto.api")

GRPC_THREADS = 32


def run(spec: dict[str, Any], link: child.ControlLink) -> int:
    config = Config.from_json(spec["config"])
    run_dir = spec["run_dir"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    pools = {
        c.name: WorkerPool(c.name, [worker_address(run_dir, c.name, i) for i in range(c.workers)])
        for c in config.components
    }
    components = {
        kind: frozenset(c.name for c in config.components if c.kind == kind)
        for kind in {c.kind for c in config.components}
    }

    def on_message(message: dict[str, Any]) -> None:
        if message.get("cmd") == "stats":
            counts = {name: pool.request_counts() for name, pool in pools.items()}
            link.send({"event": "stats", "requests": counts})

    link.start_reader(on_message, child.exit_when_supervisor_gone)
    address = str(config.listeners.grpc)
    try:
        server = start_server(
            address,
            build_handlers(pools, components, config.runtime.request_timeout),
            threads=GRPC_THREADS,
            max_connection_age=config.runtime.max_connection_age,
            grace=config.runtime.shutdown_grace,
        )
    except RuntimeError as exc:
        log.error("cannot serve gRPC on %s: %s", address, exc)
        link.send({"event": "fatal", "reason": f"cannot bind gRPC on {address}: {exc}"})
        return EXIT_CONFIG
    link.send({"event": "ready", "pid": os.getpid()})
    log.info("gRPC API serving on %s", address)
    while not stop.wait(1.0):
        pass
    log.info("stopping: finishing in-flight calls (grace %.1f s)", config.runtime.shutdown_grace)
    server.stop(config.runtime.shutdown_grace).wait()
    for pool in pools.values():
        pool.close()
    log.info("stopped")
    return 0


def main() -> None:
    spec = child.load_spec()
    child.setup_logging("api", spec.get("log_level", "INFO"))
    child.ignore_terminal_signals()
    sys.exit(run(spec, child.ControlLink.from_env()))


if __name__ == "__main__":
    main()
