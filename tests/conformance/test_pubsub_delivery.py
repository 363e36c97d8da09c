"""No event holds its topic up for ever: the worker's delivery loop
(``workers/delivery.py``) on every pub/sub backend gives an event that fails
every delivery up to its dead-letter topic after ``maxDeliveryAttempts``,
counting on the backend's delivery count, and the topic moves on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest

from layotto.components.pubsub import cloudevents
from layotto.components.pubsub.base import Message, PubSub
from layotto.components.registry import build
from layotto.proto import appcallback_pb2 as cb
from layotto.workers.app_callback import RETRY, SUCCESS, Answer
from layotto.workers.delivery import GiveUp, Timing, TopicConsumer, Where

PUBSUB = "pubsub"
Open = Callable[[], PubSub]
NEVER = Timing(processing_timeout=3600, redeliver_interval=3600)  # no claims in these tests


@pytest.fixture(params=["in-memory", pytest.param("redis", marks=pytest.mark.redis)])
def reopen(request: pytest.FixtureRequest) -> Iterator[Open]:
    """A new backend instance, as a restarted worker opens it (in memory: the same one)."""
    opened: list[PubSub] = []
    metadata = {}
    if request.param == "redis":
        metadata["redisHost"] = request.getfixturevalue("redis_addr")

    def opener() -> PubSub:
        if request.param == "redis" or not opened:
            opened.append(cast(PubSub, build("pub_subs", request.param, PUBSUB, metadata, "a")))
        return opened[-1]

    yield opener
    for ps in opened:
        ps.close()


class Subscriber:
    """A sink that records deliveries and answers RETRY for the poison data."""

    def __init__(self, poison: bytes = b"poison") -> None:
        self.poison = poison
        self.got: list[bytes] = []
        self.changed = threading.Condition()
        self.on_delivery: Callable[[int], None] = lambda count: None

    def __call__(self, event: cb.TopicEventRequest) -> Answer:
        with self.changed:
            self.got.append(event.data)
            self.changed.notify_all()
        self.on_delivery(len(self.got))
        if event.data == self.poison:
            return Answer(RETRY, "the app answered RETRY")
        return Answer(SUCCESS)

    def wait_for(self, data: bytes, within: float = 15.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: data in self.got, within), self.got


def publish(ps: PubSub, topic: str, data: bytes) -> None:
    envelope = cloudevents.envelope(
        topic=topic, pubsub_name=PUBSUB, data=data, data_content_type="text/plain", metadata={}
    )
    ps.publish(topic, envelope, {"origin": "test"})


def consumer(ps: PubSub, sink: Subscriber, give_up: GiveUp, topic: str = "t") -> TopicConsumer:
    where = Where(PUBSUB, topic, "g", "worker-1")
    return TopicConsumer(ps, where, sink, NEVER, give_up=give_up)


def eventually(read: Callable[[], list[Message]], within: float = 10.0) -> list[Message]:
    deadline = time.monotonic() + within
    while not (found := read()):
        assert time.monotonic() < deadline, "nothing arrived in time"
        time.sleep(0.02)
    return found


def dead_letters(ps: PubSub, topic: str) -> list[dict[str, Any]]:
    messages = eventually(lambda: ps.read_new(topic, "reader", "r", 10, 0))
    return [json.loads(m.data) for m in messages]


def test_an_event_failing_every_delivery_goes_to_the_dead_letter_topic(reopen: Open) -> None:
    ps = reopen()
    publish(ps, "t", b"poison")
    publish(ps, "t", b"next")
    sink = Subscriber()
    running = consumer(ps, sink, GiveUp(max_attempts=3))
    running.start()
    try:
        sink.wait_for(b"next")
    finally:
        running.close()
    assert sink.got == [b"poison"] * 3 + [b"next"]
    [dead] = dead_letters(ps, "t-deadletter")
    assert (dead["data"], dead["topic"], dead["pubsubname"]) == ("poison", "t", PUBSUB)
    assert dead["originaltopic"] == "t"
    assert dead["deliveryattempts"] == "3"
    assert dead["lasterror"] == "the app answered RETRY"
    # Delivered from there, the attributes are the event's metadata.
    [raw] = [m.data for m in ps.read_pending("t-deadletter", "reader", "r", 10)]
    delivered = cloudevents.to_topic_event(raw, pubsub_name=PUBSUB, topic="t-deadletter")
    assert delivered.data == b"poison" and delivered.metadata["deliveryattempts"] == "3"
    assert ps.read_pending("t", "g", "worker-1", 10) == []  # acknowledged on its topic
    assert running.given_up == 1 and running.delivered == 1


def test_attempts_are_counted_across_a_restart_of_the_worker(reopen: Open) -> None:
    """The count lives in the backend: a restarted worker (a new consumer
    and, on Redis, a new connection) does not start again from one."""
    first_life = reopen()
    publish(first_life, "t", b"poison")
    publish(first_life, "t", b"next")
    sink = Subscriber()
    give_up = GiveUp(max_attempts=3)
    dying = consumer(first_life, sink, give_up)
    sink.on_delivery = lambda count: dying.stop.set() if count == 2 else None
    dying.start()
    dying.join(15)  # stopped in the back-off after its second attempt
    assert sink.got == [b"poison", b"poison"]
    sink.on_delivery = lambda count: None
    second_life = reopen()
    restarted = consumer(second_life, sink, give_up)
    restarted.start()
    try:
        sink.wait_for(b"next")
    finally:
        restarted.close()
    assert sink.got == [b"poison"] * 3 + [b"next"]
    [dead] = dead_letters(second_life, "t-deadletter")
    assert (dead["data"], dead["deliveryattempts"]) == ("poison", "3")


def test_an_event_delivered_too_often_already_is_given_up_at_once(reopen: Open) -> None:
    """Say the worker crashed during each of those deliveries: the next one
    gives it up without delivering it once more."""
    ps = reopen()
    publish(ps, "t", b"poison")
    publish(ps, "t", b"next")
    [held, _] = ps.read_new("t", "g", "worker-1", 2, 0)
    for _ in range(2):
        ps.record_retry("t", "g", "worker-1", held.id)  # 3 deliveries so far
    sink = Subscriber()
    running = consumer(ps, sink, GiveUp(max_attempts=3))
    running.start()
    try:
        sink.wait_for(b"next")
    finally:
        running.close()
    assert sink.got == [b"next"]
    [dead] = dead_letters(ps, "t-deadletter")
    assert dead["deliveryattempts"] == "3"
    assert "without an answer" in dead["lasterror"]


def test_dead_letter_topic_may_be_one_for_all_topics_or_none(reopen: Open) -> None:
    ps = reopen()
    for topic in ("a", "b"):
        publish(ps, topic, b"poison")
        publish(ps, topic, b"next")
    shared, dropping = Subscriber(), Subscriber()
    one = consumer(ps, shared, GiveUp(2, "dead-letters"), topic="a")
    none = consumer(ps, dropping, GiveUp(2, None), topic="b")
    one.start()
    none.start()
    try:
        shared.wait_for(b"next")
        dropping.wait_for(b"next")
    finally:
        one.close()
        none.close()
    [dead] = dead_letters(ps, "dead-letters")
    assert (dead["data"], dead["originaltopic"]) == ("poison", "a")
    assert ps.read_new("b-deadletter", "reader", "r", 10, 0) == []
    assert ps.read_pending("b", "g", "worker-1", 10) == []  # dropped: acknowledged
