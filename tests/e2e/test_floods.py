"""A flood against one listener does not take the sidecar's probes down."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.test_supervision import STANDALONE, http_get
from tests.sidecar import Sidecar, running_sidecar

pytestmark = pytest.mark.e2e

FLOOD = 1100  # idle connections: more than the common 1,024-descriptor limit


@contextmanager
def descriptor_limit(soft: int) -> Iterator[None]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@contextmanager
def started_with_1024_descriptors() -> Iterator[Sidecar]:
    """The sidecar starts under the usual soft limit of 1,024 open files."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with (
        descriptor_limit(1024),
        running_sidecar(STANDALONE) as sidecar,
        descriptor_limit(min(4096, hard)),  # for the test's own sockets
    ):
        yield sidecar


def probe(sidecar: Sidecar, path: str) -> tuple[int, dict[str, Any]]:
    """As an orchestrator probes: a clear refusal (503 "too many HTTP
    connections", while the flood is younger than an idle connection) is
    tried again; a timeout fails the test (http_get's own timeout)."""
    deadline = time.monotonic() + 10
    while True:
        code, body = http_get(sidecar, path)
        if "too many HTTP connections" not in body.get("error", ""):
            return code, body
        assert time.monotonic() < deadline, "probes refused for 10 s"
        time.sleep(0.1)  # polling, as a probe does


def test_idle_connections_beyond_the_cap_make_room_and_probes_still_answer() -> None:
    with started_with_1024_descriptors() as sidecar:
        flood = []
        try:
            for _ in range(FLOOD):
                flood.append(socket.create_connection(("127.0.0.1", sidecar.http_port), 5))
            code, body = probe(sidecar, "/actuator/health/readiness")
            assert code == 200 and body["status"] == "UP"
            assert probe(sidecar, "/actuator/health/liveness")[0] == 200
            # the oldest idle ones were closed to make room (1024 by default)
            flood[0].settimeout(5)
            assert flood[0].recv(1) == b""
        finally:
            for sock in flood:
                sock.close()
        log = "\n".join(sidecar.lines)
        assert "Traceback" not in log
        assert log.count("Too many open files") <= 1
