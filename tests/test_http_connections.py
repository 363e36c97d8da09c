"""Admission of HTTP connections: the oldest idle one makes room; busy ones never do."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from layotto.supervisor.http_connections import Connections, RateLimitedLog


async def test_a_newcomer_beyond_the_limit_closes_the_oldest_idle_connection() -> None:
    connections = Connections(limit=2)
    shed: list[str] = []

    async def idle(name: str) -> None:
        with connections.idle() as scope:
            await trio.sleep_forever()
        if scope.cancelled_caught:
            shed.append(name)
        connections.release()

    async with trio.open_nursery() as nursery:
        for name in ("first", "second"):
            assert connections.admit()
            nursery.start_soon(idle, name)
            await trio.testing.wait_all_tasks_blocked()
        assert connections.admit()  # third: makes room
        await trio.testing.wait_all_tasks_blocked()
        assert shed == ["first"]
        nursery.cancel_scope.cancel()


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
