"""Every Redis backend's health check tells a hung server at once.

A Redis stopped with SIGSTOP accepts nothing and answers nothing; the data
path's client would wait readTimeout per try over several retries (here at
least 4 x 3 s) before giving up, and readiness stayed UP all that time.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from layotto.components.errors import BackendUnavailableError
from layotto.components.registry import build
from tests.redis_server import RedisServer, running_redis

pytestmark = pytest.mark.redis

KINDS = ("state", "lock", "sequencer", "config_store", "pub_subs")
# What a user may well configure: patient data-path calls.
PATIENT = {"readTimeout": "3000", "maxRetries": "3", "dialTimeout": "3000"}


@pytest.fixture
def stoppable_redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        try:
            yield server
        finally:
            server.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("kind", KINDS)
def test_health_of_a_hung_redis_is_down_within_seconds(
    kind: str, stoppable_redis: RedisServer
) -> None:
    component = build(kind, "redis", "c", {"redisHost": stoppable_redis.address, **PATIENT}, "a")
    try:
        component.ping()
        stoppable_redis.process.send_signal(signal.SIGSTOP)
        outcome: list[BaseException | None] = []

        def ping() -> None:
            try:
                component.ping()
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        probe = threading.Thread(target=ping, daemon=True)
        probe.start()
        probe.join(5.0)  # the data path's own client would still be retrying (>= 12 s)
        assert outcome, "the health check hung on a stopped Redis"
        assert isinstance(outcome[0], BackendUnavailableError)
        stoppable_redis.process.send_signal(signal.SIGCONT)
        component.ping()  # and it recovers on the same object
    finally:
        stoppable_redis.process.send_signal(signal.SIGCONT)
        component.close()
