"""Entry point of the API process: gRPC in front, one WorkerPool per component.

Commands from the supervisor (control link):
- ``workers``: route a component to this set of worker addresses; retired
  ones finish their calls, then ``retired`` is reported so the supervisor can
  stop them without failing a call.
- ``drain`` (hot upgrade): steer new connections to the next API generation
  (``steer_to``: the reuseport group index of its first member), wait until
  clients have left (connection-age GOAWAY), then stop.
- ``steer``: attach "ret ``to``" to the reuseport group (``to`` 0 once the
  old generation has left: member 0 serves, the others stand by).
- ``stats``: per-worker request counts for ``layotto status``.
SIGTERM stops at once, finishing in-flight calls within the grace period.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from layotto.api import reuseport
from layotto.api.limits import Saturation
from layotto.api.nng_client import WorkerPool
from layotto.api.server import build_handlers, start_server
from layotto.api.streams import RESTARTING, Hub
from layotto.api.thread_pool import ElasticThreadPool
from layotto.api.websocket import WebSocketServer
from layotto.boundary import child, nng_exchange
from layotto.boundary.addresses import events_address, websocket_socket
from layotto.boundary.control_link import ControlLink
from layotto.boundary.exits import EXIT_CONFIG
from layotto.boundary.specs import ApiSpec
from layotto.boundary.status import CallError, Code

log = logging.getLogger("layotto.api")

# Unary calls' threads. Each open subscription stream holds a thread for its
# lifetime from a pool of its own (api/thread_pool.py): runtime.max_streams
# of them at most (api/limits.py), plus a few that answer RESOURCE_EXHAUSTED
# beyond, and they end when idle. Streams never take the unary threads.
GRPC_THREADS = 32
REFUSING_THREADS = 16
STREAM_THREAD_IDLE = 2.0  # seconds
# Connections must stay at zero this long before a draining API stops:
# /proc snapshots can miss a connection for a moment.
IDLE_CONFIRM = 0.3
RETIRE_TIMEOUT = 60.0


class ApiProcess:
    def __init__(self, spec: ApiSpec, link: ControlLink) -> None:
        self.config = spec.config
        self.link = link
        self.stop = threading.Event()
        nng_exchange.limit_threads()  # before the first nng socket
        self.pools = {
            c.name: WorkerPool(c.name, spec.workers.get(c.name, ())) for c in self.config.components
        }
        self.components = {
            kind: frozenset(c.name for c in self.config.components if c.kind == kind)
            for kind in {c.kind for c in self.config.components}
        }
        self.port = self.config.listeners.grpc.port
        runtime = self.config.runtime
        self.steer_to = spec.steer_to
        self.saturation = Saturation(self.link.send)
        streams = self.saturation.budget(
            "subscription streams", "runtime.max_streams", runtime.max_streams
        )
        self.hub = Hub(self.pools, streams)
        self.stream_threads = ElasticThreadPool(
            runtime.max_streams + REFUSING_THREADS, "stream", STREAM_THREAD_IDLE
        )
        self.websocket = WebSocketServer(
            self.hub,
            self.components,
            websocket_socket(spec.run_dir, spec.generation, spec.index),
            self.saturation.budget(
                "WebSocket connections",
                "runtime.max_websocket_connections",
                runtime.max_websocket_connections,
            ),
        )

    def end_streams(self) -> None:
        """Streams would keep their connections here forever: end them, so
        clients subscribe again (on the next generation, after a drain)."""
        self.hub.end_all(CallError(Code.UNAVAILABLE, RESTARTING))
        if not self.hub.wait_sessions_closed(5.0):
            log.warning("some subscription streams did not end in time")

    def on_message(self, message: dict[str, Any]) -> None:
        command = message.get("cmd")
        if command == "stats":
            counts = {name: pool.request_counts() for name, pool in self.pools.items()}
            self.link.send({"event": "stats", "requests": counts})
        elif command == "workers":
            self.set_workers(message["component"], message["addresses"])
        elif command == "drain":
            steer_to = int(message.get("steer_to", 1))
            threading.Thread(target=self.drain, args=(steer_to,), name="drain", daemon=True).start()
        elif command == "steer":
            reuseport.steer_new_connections(self.port, int(message["to"]))

    def set_workers(self, component: str, addresses: list[str]) -> None:
        pool = self.pools.get(component)
        if pool is None:
            return
        for slot in pool.set_addresses(addresses):

            def finish(slot: Any = slot) -> None:
                if not slot.wait_idle(RETIRE_TIMEOUT):
                    log.warning("%s still busy after %.0f s", slot.address, RETIRE_TIMEOUT)
                slot.close()
                self.hub.retire_link(events_address(slot.address))
                self.link.send(
                    {"event": "retired", "component": component, "address": slot.address}
                )

            threading.Thread(target=finish, name="retire", daemon=True).start()

    def drain(self, steer_to: int) -> None:
        """Hand new connections to the next generation (group member
        ``steer_to`` and on, api/reuseport.py); stop once ours are gone."""
        runtime = self.config.runtime
        attached = reuseport.steer_new_connections(self.port, steer_to)
        log.info(
            "draining: new connections go to the next generation (member %d, %d listeners)",
            steer_to,
            attached,
        )
        self.end_streams()
        cap = time.monotonic() + 1.1 * runtime.max_connection_age + runtime.shutdown_grace + 2
        idle_since: float | None = None
        while time.monotonic() < cap:
            now = time.monotonic()
            if reuseport.connection_count(self.port) == 0:
                idle_since = idle_since or now
                if now - idle_since >= IDLE_CONFIRM:
                    break
            else:
                idle_since = None
            time.sleep(0.05)  # polling /proc: there is no event for "last client left"
        else:
            log.warning("clients still connected after the drain limit; stopping anyway")
        self.stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        self.link.start_reader(self.on_message, child.exit_when_supervisor_gone)
        address = str(self.config.listeners.grpc)
        runtime = self.config.runtime
        try:
            server = start_server(
                address,
                build_handlers(
                    self.pools,
                    self.components,
                    runtime.request_timeout,
                    self.hub,
                    self.stream_threads,
                ),
                threads=GRPC_THREADS,
                max_connection_age=runtime.max_connection_age,
                max_receive_message_size=runtime.max_receive_message_size,
                max_send_message_size=runtime.max_send_message_size,
            )
        except RuntimeError as exc:
            log.error("cannot serve gRPC on %s: %s", address, exc)
            self.link.send({"event": "fatal", "reason": f"cannot bind gRPC on {address}: {exc}"})
            return EXIT_CONFIG
        try:
            self.websocket.start()  # the supervisor relays /ws here
        except OSError as exc:
            log.error("cannot serve WebSocket on %s: %s", self.websocket.path, exc)
            self.link.send({"event": "fatal", "reason": f"cannot serve WebSocket: {exc}"})
            server.stop(0)
            return EXIT_CONFIG
        # Normally "ret 0": new connections stay on the group's first member
        # (the oldest generation until it drains; the others stand by). While
        # an older generation drains, the index it steers to, so that a
        # restart of ours never undoes its steering (api/reuseport.py).
        reuseport.steer_new_connections(self.port, self.steer_to)
        self.link.send({"event": "ready", "pid": os.getpid()})
        log.info("gRPC API serving on %s", address)
        while not self.stop.wait(1.0):
            pass
        log.info("stopping: finishing in-flight calls (grace %.1f s)", runtime.shutdown_grace)
        self.end_streams()
        server.stop(runtime.shutdown_grace).wait()
        self.stream_threads.shutdown(wait=False)
        self.websocket.stop()
        self.hub.close()
        for pool in self.pools.values():
            pool.close()
        log.info("stopped")
        return 0


def run(spec: ApiSpec, link: ControlLink) -> int:
    return ApiProcess(spec, link).run()


def main() -> None:
    child.run_exec(run)


if __name__ == "__main__":
    main()
