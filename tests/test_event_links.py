"""api/event_links.py against a real nng events socket served by the test:
a slow poll is slow, not lost; contexts are pooled, not kept per thread."""

from __future__ import annotations

import base64
import itertools
import json
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layotto.api import event_links
from layotto.api.event_links import EventLink, Watcher
from layotto.boundary.frames import decode_request, encode_reply
from layotto.boundary.nng_replier import EventServer
from layotto.boundary.status import Code

WAIT = 10.0  # the bound of every wait for the link's threads


def _events_of(sub_id: int, event: bytes) -> bytes:
    return json.dumps(
        {"events": {str(sub_id): [base64.b64encode(event).decode()]}, "gone": []}
    ).encode()


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[str, list[Callable[[str], bytes | None]]]]:
    """An events socket whose answers the test chooses: each PollEvents is
    answered by the next function of the list (None: the default, no event)."""
    answers: list[Callable[[str], bytes | None]] = []
    polls = itertools.count()

    def serve(frame: bytes) -> bytes:
        request = decode_request(frame)
        payload = b""
        if request.method == "PollEvents":
            n = next(polls)
            answer = answers[n] if n < len(answers) else None
            payload = (answer(request.method) if answer else None) or json.dumps(
                {"events": {}, "gone": []}
            ).encode()
        return encode_reply(Code.OK, request.request_id, payload)

    address = f"ipc://{tmp_path}/e-test.ipc"
    server = EventServer(address, serve)
    try:
        yield address, answers
    finally:
        server.close()


def _watch(link: EventLink) -> tuple[queue.Queue[list[bytes]], threading.Event]:
    events: queue.Queue[list[bytes]] = queue.Queue()
    lost = threading.Event()
    link.watch(1, Watcher(events=events.put, lost=lost.set))
    return events, lost


def test_a_poll_that_times_out_keeps_the_subscriptions(
    worker: tuple[str, list[Callable[[str], bytes | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slow poll (the worker busy longer than the poll's timeout) used to
    report every subscription lost, and their streams were all reopened."""
    address, answers = worker
    monkeypatch.setattr(event_links, "POLL_TIMEOUT", 0.3)
    released = threading.Event()

    def slow(_method: str) -> bytes | None:
        released.wait(WAIT)  # answered after the caller gave up
        return None

    answers += [slow, lambda _m: _events_of(1, b"after the slow poll")]
    link = EventLink("pubsub", address)
    try:
        events, lost = _watch(link)
        assert events.get(timeout=WAIT) == [b"after the slow poll"]
        assert not lost.is_set()
    finally:
        released.set()
        link.close()


def test_polls_unanswered_for_longer_than_the_lease_lose_the_subscriptions(
    worker: tuple[str, list[Callable[[str], bytes | None]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """By then the worker has closed them itself (lease): they move."""
    address, answers = worker
    monkeypatch.setattr(event_links, "POLL_TIMEOUT", 0.3)
    monkeypatch.setattr(event_links, "SLOW_LIMIT", 0.0)
    released = threading.Event()
    answers.append(lambda _m: (released.wait(WAIT), None)[1])
    link = EventLink("pubsub", address)
    try:
        _events, lost = _watch(link)
        assert lost.wait(WAIT)
    finally:
        released.set()
        link.close()


def test_contexts_are_pooled_not_kept_per_thread(
    worker: tuple[str, list[Callable[[str], bytes | None]]],
) -> None:
    """Every stream, WebSocket client and stream reader is a thread of its own
    that calls the link and ends: a context kept per thread grew the process
    for as long as the link lived."""
    address, _answers = worker
    link = EventLink("pubsub", address)
    try:
        for burst in range(5):
            threads = [
                threading.Thread(
                    target=link.call,
                    args=("CloseSubscription", json.dumps({"sub": burst}).encode(), WAIT),
                )
                for _ in range(40)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
        assert link.requesters() <= event_links.IDLE_REQUESTERS
    finally:
        link.close()
    assert link.requesters() == 0
