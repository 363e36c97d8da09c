"""api/limits.py and api/thread_pool.py without a server."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from layotto.api.limits import Saturation
from layotto.api.thread_pool import ElasticThreadPool

WAIT = 10.0


def test_a_budget_refuses_beyond_its_limit_and_logs_refusals_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[dict[str, str]] = []
    saturation = Saturation(sent.append)
    now = [0.0]
    budget = saturation.budget("streams", "runtime.max_streams", 10)
    budget._clock = lambda: now[0]
    with caplog.at_level(logging.WARNING, "layotto.api.limits"):
        assert all(budget.try_take() for _ in range(10))
        assert not any(budget.try_take() for _ in range(100))
        now[0] = 61.0
        assert not budget.try_take()
    refusals = [r.getMessage() for r in caplog.records if "refused since" in r.getMessage()]
    assert refusals == [
        "too many streams: 10 are open, the limit set by runtime.max_streams; try again later"
        " (1 refused since this was last logged)",
        "too many streams: 10 are open, the limit set by runtime.max_streams; try again later"
        " (100 refused since this was last logged)",
    ]
    assert budget.refusal().endswith("runtime.max_streams; try again later")


def test_saturation_is_reported_once_each_way_and_does_not_flap() -> None:
    sent: list[dict[str, str]] = []
    budget = Saturation(sent.append).budget("streams", "runtime.max_streams", 10)
    for _ in range(10):
        budget.try_take()
    budget.give_back()  # 9 of 10: still saturated
    budget.try_take()
    for _ in range(2):
        budget.give_back()  # 8 of 10: below 90 %
    assert sent == [
        {
            "event": "health",
            "status": "UP",
            "reason": "streams at their limit (runtime.max_streams = 10): new ones are refused",
        },
        {"event": "health", "status": "UP", "reason": ""},
    ]


def test_the_stream_pool_runs_every_call_and_its_threads_end_when_idle() -> None:
    pool = ElasticThreadPool(4, "test", idle_timeout=0.05)
    release = threading.Event()
    try:
        futures = [pool.submit(lambda n=n: release.wait(WAIT) and n) for n in range(6)]
        assert pool.threads() == 4  # the other two wait for a thread
        release.set()
        assert [f.result(WAIT) for f in futures] == list(range(6))
        deadline = time.monotonic() + WAIT
        while pool.threads() and time.monotonic() < deadline:
            time.sleep(0.01)  # no event for "a thread ended": poll, bounded
        assert pool.threads() == 0
        assert pool.submit(lambda: 7).result(WAIT) == 7  # and start again
    finally:
        pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 0)
