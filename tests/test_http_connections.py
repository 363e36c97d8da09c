"""Admission of HTTP connections: the oldest idle one makes room; busy ones,
young ones and ones whose request waits to be read never do."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from layotto.supervisor import http_connections
from layotto.supervisor.http_connections import Connections, RateLimitedLog


async def waiting_connections(
    nursery: trio.Nursery, connections: Connections, names: list[str], shed: list[str]
) -> dict[str, socket.socket]:
    """A connection per name, waiting for its request; returns the client ends."""
    clients = {}
    for name in names:
        ours, theirs = socket.socketpair()
        clients[name] = theirs

        async def wait(name: str = name, ours: socket.socket = ours) -> None:
            with ours, connections.waiting(ours.fileno()) as scope:
                await trio.sleep_forever()
            if scope.cancelled_caught:
                shed.append(name)
            connections.release()

        assert connections.admit()
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
    return clients


async def test_a_newcomer_beyond_the_limit_closes_the_oldest_idle_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_connections, "MIN_IDLE", 0.0)
    connections = Connections(limit=3)
    shed: list[str] = []
    async with trio.open_nursery() as nursery:
        clients = await waiting_connections(nursery, connections, ["a", "b", "c"], shed)
        clients["a"].send(b"GET /actuator/health HTTP/1.1\r\n")  # sent, not read yet
        assert connections.admit()  # makes room: not "a", whose bytes wait
        await trio.testing.wait_all_tasks_blocked()
        assert shed == ["b"]
        nursery.cancel_scope.cancel()
    for client in clients.values():
        client.close()


async def test_young_connections_are_not_idle_and_a_newcomer_is_refused() -> None:
    connections = Connections(limit=2)  # MIN_IDLE as shipped: these are younger
    shed: list[str] = []
    async with trio.open_nursery() as nursery:
        clients = await waiting_connections(nursery, connections, ["a", "b"], shed)
        assert not connections.admit()
        assert shed == []
        nursery.cancel_scope.cancel()
    for client in clients.values():
        client.close()


def test_when_every_connection_is_busy_a_newcomer_is_refused() -> None:
    connections = Connections(limit=2)
    assert connections.admit() and connections.admit()  # both busy: never idle
    assert not connections.admit()
    connections.release()
    assert connections.admit()


def test_the_log_says_once_per_period_how_many_it_did_not_say(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RateLimitedLog(every=3600)
    log.warning("refused %d", 1)
    log.warning("refused %d", 2)
    log.warning("refused %d", 3)
    log._last = -float("inf")  # the period is over
    log.warning("refused %d", 4)
    records = [r.getMessage() for r in caplog.records]
    assert records == ["refused 1", "refused 4 (2 more since the last report)"]
