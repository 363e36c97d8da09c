"""Pub/sub conformance: the consumer-group contract of ``components/pubsub/base.py``,
run on every backend, plus what only Redis Streams has (trimming, entries
deleted under a consumer, a vanished group, an unreachable server).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import pytest
import redis

from layotto.components.errors import BackendUnavailableError, InvalidRequestError
from layotto.components.pubsub.base import Message, PubSub
from layotto.components.pubsub.memory import MemoryPubSub
from layotto.components.registry import build
from tests.redis_server import free_port

BACKENDS = ["in-memory", pytest.param("redis", marks=pytest.mark.redis)]
KEY = "layotto-pubsub|||"

Open = Callable[..., PubSub]


def redis_blocked(raw: redis.Redis) -> bool:
    """A client of this server waits in a blocking XREADGROUP."""
    return any(
        c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in raw.client_list()
    )


@dataclass
class Backend:
    open: Open  # the backend as a restarted process sees it
    blocked: Callable[[], bool]  # is a read_new waiting inside the backend now?


def make(type_: str, metadata: dict[str, str] | None = None) -> PubSub:
    return cast(PubSub, build("pub_subs", type_, "pubsub", metadata or {}, "app"))


def _memory_read_waiting() -> bool:
    """Some thread waits on the Condition inside the in-memory ``read_new``."""
    for frame in sys._current_frames().values():
        if (
            frame.f_code is threading.Condition.wait.__code__
            and frame.f_back is not None
            and frame.f_back.f_code is MemoryPubSub.read_new.__code__
        ):
            return True
    return False


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """On Redis ``open`` makes a new instance each time; in memory it returns the
    same one (a new one would start empty)."""
    stores: list[PubSub] = []
    if request.param == "redis":
        address = request.getfixturevalue("redis_addr")
        host, _, port = address.rpartition(":")
        raw = redis.Redis(host=host, port=int(port))

        def opener(**metadata: str) -> PubSub:
            stores.append(make("redis", {"redisHost": address, **metadata}))
            return stores[-1]

        yield Backend(opener, lambda: redis_blocked(raw))
        raw.close()
    else:
        only = make("in-memory", {"consumerID": "ignored", "processingTimeout": "5"})
        stores.append(only)
        yield Backend(lambda **metadata: only, _memory_read_waiting)
    for store in stores:
        store.close()


@pytest.fixture
def reopen(backend: Backend) -> Open:
    return backend.open


@pytest.fixture
def ps(reopen: Open) -> PubSub:
    return reopen()


def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def datas(messages: list[Message]) -> list[bytes]:
    return [m.data for m in messages]


def id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


def publish_all(ps: PubSub, topic: str, n: int) -> list[str]:
    return [ps.publish(topic, b"m%d" % i, {}) for i in range(n)]


def eventually(condition: Callable[[], list[Message]], within: float = 5.0) -> list[Message]:
    """Poll until ``condition`` returns messages; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
    return found


def test_ping(ps: PubSub) -> None:
    ps.ping()


def test_publish_then_read_in_order(ps: PubSub) -> None:
    ids = publish_all(ps, "t", 5)
    assert ids == sorted(ids, key=id_key) and len(set(ids)) == 5
    got = ps.read_new("t", "g", "c1", 10, 0)
    assert [m.id for m in got] == ids
    assert datas(got) == [b"m%d" % i for i in range(5)]
    assert ps.read_new("t", "g", "c1", 10, 0) == []


def test_count_limits_a_read(ps: PubSub) -> None:
    publish_all(ps, "t", 5)
    assert datas(ps.read_new("t", "g", "c1", 2, 0)) == [b"m0", b"m1"]
    assert datas(ps.read_new("t", "g", "c1", 2, 0)) == [b"m2", b"m3"]
    assert datas(ps.read_new("t", "g", "c1", 2, 0)) == [b"m4"]


def test_topics_are_separate(ps: PubSub) -> None:
    ps.publish("a", b"for a", {})
    ps.publish("b", b"for b", {})
    assert datas(ps.read_new("a", "g", "c", 10, 0)) == [b"for a"]
    assert datas(ps.read_new("b", "g", "c", 10, 0)) == [b"for b"]


def test_every_group_gets_every_message(ps: PubSub) -> None:
    assert ps.read_new("t", "early", "c", 10, 0) == []  # group made before any publish
    publish_all(ps, "t", 3)
    assert datas(ps.read_new("t", "early", "c", 10, 0)) == [b"m0", b"m1", b"m2"]
    # A group made later starts at the beginning too (XGROUP CREATE ... 0).
    assert datas(ps.read_new("t", "late", "c", 10, 0)) == [b"m0", b"m1", b"m2"]


def test_consumers_of_a_group_split_messages(ps: PubSub) -> None:
    ids = publish_all(ps, "t", 10)
    first = ps.read_new("t", "g", "c1", 3, 0)
    second = ps.read_new("t", "g", "c2", 10, 0)
    assert len(first) == 3 and len(second) == 7
    assert [m.id for m in first + second] == ids
    assert ps.read_new("t", "g", "c1", 10, 0) == []


def test_read_new_without_block_returns_at_once(ps: PubSub) -> None:
    start = time.monotonic()
    assert ps.read_new("t", "g", "c", 10, 0) == []
    assert time.monotonic() - start < 0.5


def test_read_new_waits_up_to_block(ps: PubSub) -> None:
    start = time.monotonic()
    assert ps.read_new("t", "g", "c", 10, 0.3) == []
    assert 0.25 <= time.monotonic() - start < 2.0


def test_blocked_read_returns_on_publish(ps: PubSub, backend: Backend) -> None:
    ps.read_new("t", "g", "c", 1, 0)  # make the group
    with ThreadPoolExecutor(1) as pool:
        start = time.monotonic()
        reading = pool.submit(ps.read_new, "t", "g", "c", 10, 20)
        wait_until(backend.blocked)  # the read is waiting: the publish must wake it
        message_id = ps.publish("t", b"wake up", {})
        got = reading.result(10)
        elapsed = time.monotonic() - start
    assert [m.id for m in got] == [message_id]
    assert elapsed < 5, "the read did not wake up on publish"


def test_close_ends_a_blocked_read(ps: PubSub, backend: Backend) -> None:
    ps.read_new("t", "g", "c", 1, 0)  # make the group
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(ps.read_new, "t", "g", "c", 1, 30)
        wait_until(backend.blocked)
        start = time.monotonic()
        ps.close()
        assert reading.result(10) == []
        # Redis cannot interrupt a blocked XREADGROUP: it ends within one slice.
        assert time.monotonic() - start < 3, "close did not end the blocked read"
    assert ps.read_new("t", "g", "c", 1, 5) == []  # and no read blocks afterwards


def test_unacked_messages_come_back_to_the_same_consumer(reopen: Open) -> None:
    ps = reopen()
    ids = publish_all(ps, "t", 4)
    assert len(ps.read_new("t", "g", "c1", 3, 0)) == 3
    restarted = reopen()
    assert restarted.read_new("t", "g", "c1", 10, 0)[0].id == ids[3]  # not redelivered as new
    assert [m.id for m in restarted.read_pending("t", "g", "c1", 10)] == ids
    assert restarted.read_pending("t", "g", "c2", 10) == []
    restarted.ack("t", "g", [ids[0], ids[2]])
    assert [m.id for m in restarted.read_pending("t", "g", "c1", 10)] == [ids[1], ids[3]]
    assert [m.id for m in restarted.read_pending("t", "g", "c1", 1)] == [ids[1]]
    assert datas(restarted.read_pending("t", "g", "c1", 1)) == [b"m1"]


def test_acked_messages_never_return(ps: PubSub) -> None:
    ids = publish_all(ps, "t", 3)
    ps.read_new("t", "g", "c1", 10, 0)
    ps.ack("t", "g", ids)
    ps.ack("t", "g", ids)  # twice is harmless
    assert ps.read_pending("t", "g", "c1", 10) == []
    assert ps.claim_idle("t", "g", "c2", 0, 10) == []
    assert ps.read_new("t", "g", "c1", 10, 0) == []
    assert len(ps.read_new("t", "other", "c1", 10, 0)) == 3  # acks are per group


def test_claim_idle_takes_a_dead_consumers_messages(ps: PubSub) -> None:
    ids = publish_all(ps, "t", 3)
    ps.read_new("t", "g", "dead", 2, 0)
    assert ps.claim_idle("t", "g", "c2", 30, 10) == []  # not idle for that long yet
    claimed = eventually(lambda: ps.claim_idle("t", "g", "c2", 0.2, 10))
    assert [m.id for m in claimed] == ids[:2]
    assert datas(claimed) == [b"m0", b"m1"]
    assert ps.read_pending("t", "g", "dead", 10) == []
    assert [m.id for m in ps.read_pending("t", "g", "c2", 10)] == ids[:2]
    assert ps.claim_idle("t", "g", "c3", 0.2, 10) == []  # claiming reset the idle time


def test_claim_idle_respects_count(ps: PubSub) -> None:
    ids = publish_all(ps, "t", 3)
    ps.read_new("t", "g", "dead", 3, 0)
    assert [m.id for m in ps.claim_idle("t", "g", "c2", 0, 2)] == ids[:2]


def test_record_retry_prevents_claiming(ps: PubSub) -> None:
    [message_id] = publish_all(ps, "t", 1)
    ps.read_new("t", "g", "busy", 10, 0)
    end = time.monotonic() + 1.2
    while time.monotonic() < end:  # three times the idle limit, retried all along
        assert ps.record_retry("t", "g", "busy", message_id) > 1
        assert ps.claim_idle("t", "g", "other", 0.4, 10) == []
        time.sleep(0.05)
    claimed = eventually(lambda: ps.claim_idle("t", "g", "other", 0.4, 10))
    assert [m.id for m in claimed] == [message_id]


def test_record_retry_does_not_take_anothers_message(ps: PubSub) -> None:
    [message_id] = publish_all(ps, "t", 1)
    ps.read_new("t", "g", "owner", 10, 0)
    assert ps.record_retry("t", "g", "stranger", message_id) == 0
    assert ps.record_retry("t", "nogroup", "stranger", message_id) == 0
    assert ps.record_retry("t", "g", "owner", "99-0") == 0  # not pending at all
    assert ps.read_pending("t", "g", "stranger", 10) == []
    [mine] = ps.read_pending("t", "g", "owner", 10)
    assert (mine.id, mine.deliveries) == (message_id, 2)  # the stranger counted nothing


def test_delivery_counts_are_kept_by_the_backend(reopen: Open) -> None:
    """Every read and retry counts, and a restarted worker sees the count."""
    ps = reopen()
    first, second = publish_all(ps, "t", 2)
    assert [m.deliveries for m in ps.read_new("t", "g", "c", 10, 0)] == [1, 1]
    assert ps.record_retry("t", "g", "c", first) == 2
    assert ps.record_retry("t", "g", "c", first) == 3
    restarted = reopen()
    assert [(m.id, m.deliveries) for m in restarted.read_pending("t", "g", "c", 10)] == [
        (first, 4),
        (second, 2),
    ]
    restarted.release("t", "g", "c", [first])
    restarted.release("t", "g", "c", [second], undo_read=True)  # read, never delivered
    claimed = restarted.claim_idle("t", "g", "other", 3600, 10)
    assert [(m.id, m.deliveries) for m in claimed] == [(first, 5), (second, 2)]
    restarted.ack("t", "g", [first])
    assert restarted.record_retry("t", "g", "other", first) == 0


def test_undoing_a_read_never_counts_below_zero(ps: PubSub) -> None:
    [message_id] = publish_all(ps, "t", 1)
    ps.read_new("t", "g", "c", 1, 0)
    for _ in range(3):
        ps.release("t", "g", "c", [message_id], undo_read=True)
    [claimed] = ps.claim_idle("t", "g", "c", 3600, 1)
    assert claimed.deliveries == 1


def test_metadata_and_binary_data_round_trip(ps: PubSub) -> None:
    metadata = {"content-type": "x", "ünïcode": "välue", "empty": ""}
    data = bytes(range(256))
    message_id = ps.publish("t", data, metadata)
    [got] = ps.read_new("t", "g", "c", 10, 0)
    assert (got.id, got.data, dict(got.metadata)) == (message_id, data, metadata)
    [again] = ps.read_pending("t", "g", "c", 10)
    assert (again.data, dict(again.metadata)) == (data, metadata)
    ps.publish("t", b"", {})
    [empty] = ps.read_new("t", "g", "c", 10, 0)
    assert (empty.data, dict(empty.metadata)) == (b"", {})


@pytest.mark.parametrize("call", ["ack", "record_retry", "release"])
def test_bad_ids_are_invalid(ps: PubSub, call: str) -> None:
    with pytest.raises(InvalidRequestError, match="not-an-id"):
        if call == "ack":
            ps.ack("t", "g", ["not-an-id"])
        elif call == "record_retry":
            ps.record_retry("t", "g", "c", "not-an-id")
        else:
            ps.release("t", "g", "c", ["not-an-id"])


def test_count_must_be_positive(ps: PubSub) -> None:
    reads: list[Callable[[], list[Message]]] = [
        lambda: ps.read_new("t", "g", "c", 0, 0),
        lambda: ps.read_pending("t", "g", "c", 0),
        lambda: ps.claim_idle("t", "g", "c", 0, 0),
    ]
    for read in reads:
        with pytest.raises(InvalidRequestError, match="count"):
            read()


def test_concurrent_publishers_and_consumers_see_each_message_once(ps: PubSub) -> None:
    publishers, per_publisher = 4, 50
    total = publishers * per_publisher
    seen: Counter[bytes] = Counter()
    seen_lock = threading.Lock()
    done = threading.Event()
    deadline = time.monotonic() + 30

    def publish(p: int) -> None:
        for i in range(per_publisher):
            ps.publish("t", b"%d/%d" % (p, i), {"from": str(p)})

    def consume(name: str) -> None:
        while not done.is_set() and time.monotonic() < deadline:
            batch = ps.read_new("t", "g", name, 7, 0.1)
            ps.ack("t", "g", [m.id for m in batch])
            with seen_lock:
                seen.update(m.data for m in batch)
                if sum(seen.values()) >= total:
                    done.set()

    with ThreadPoolExecutor(publishers + 2) as pool:
        consumers = [pool.submit(consume, name) for name in ("c1", "c2")]
        for future in [pool.submit(publish, p) for p in range(publishers)] + consumers:
            future.result()
    expected = {b"%d/%d" % (p, i) for p in range(publishers) for i in range(per_publisher)}
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    assert ps.read_pending("t", "g", "c1", 10) == []
    assert ps.read_pending("t", "g", "c2", 10) == []


# --- Redis only --------------------------------------------------------------


@pytest.fixture
def raw(redis_addr: str) -> Iterator[redis.Redis]:
    host, _, port = redis_addr.rpartition(":")
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


@pytest.fixture
def redis_open(redis_addr: str) -> Iterator[Open]:
    """Builds Redis instances: ``redis_open(**component_metadata)``."""
    stores: list[PubSub] = []

    def opener(**metadata: str) -> PubSub:
        stores.append(make("redis", {"redisHost": redis_addr, **metadata}))
        return stores[-1]

    yield opener
    for store in stores:
        store.close()


@pytest.mark.redis
def test_redis_layout(redis_open: Open, raw: redis.Redis) -> None:
    ps = redis_open()
    message_id = ps.publish("orders", b"payload", {"k": "v"})
    [(entry_id, fields)] = cast(list[tuple[bytes, dict[bytes, bytes]]], raw.xrange(KEY + "orders"))
    assert entry_id.decode() == message_id
    assert fields == {b"data": b"payload", b"metadata": b'{"k": "v"}'}


@pytest.mark.redis
def test_redis_max_len_approx_trims(redis_open: Open, raw: redis.Redis) -> None:
    ps = redis_open(maxLenApprox="10")
    for i in range(1000):
        ps.publish("t", b"%d" % i, {})
    # "~" trims whole stream nodes (100 entries by default), never below 10.
    assert 10 <= raw.xlen(KEY + "t") <= 300


@pytest.mark.redis
def test_redis_bad_max_len_is_invalid(redis_addr: str) -> None:
    for value in ("0", "-1", "many"):
        with pytest.raises(InvalidRequestError, match="maxLenApprox"):
            make("redis", {"redisHost": redis_addr, "maxLenApprox": value})


@pytest.mark.redis
def test_redis_deleted_pending_entries_are_skipped_and_acked(
    redis_open: Open, raw: redis.Redis
) -> None:
    ps = redis_open()
    ids = publish_all(ps, "t", 5)
    ps.read_new("t", "g", "c1", 10, 0)
    raw.xdel(KEY + "t", ids[0], ids[1], ids[3])
    # The first read of 2 meets only deleted entries at first: it must go on.
    assert [m.id for m in ps.read_pending("t", "g", "c1", 2)] == [ids[2], ids[4]]
    assert raw.xpending(KEY + "t", "g")["pending"] == 2
    raw.xdel(KEY + "t", ids[2])
    claimed = eventually(lambda: ps.claim_idle("t", "g", "c2", 0, 10))
    assert [m.id for m in claimed] == [ids[4]]
    assert raw.xpending(KEY + "t", "g")["pending"] == 1


@pytest.mark.redis
def test_redis_group_recreated_after_stream_deleted(redis_open: Open, raw: redis.Redis) -> None:
    ps = redis_open()
    ps.publish("t", b"old", {})
    assert datas(ps.read_new("t", "g", "c", 10, 0)) == [b"old"]
    raw.delete(KEY + "t")
    assert ps.read_new("t", "g", "c", 10, 0) == []
    ps.publish("t", b"new", {})
    assert datas(ps.read_new("t", "g", "c", 10, 0)) == [b"new"]
    raw.delete(KEY + "t")
    assert ps.read_pending("t", "g", "c", 10) == []
    assert ps.claim_idle("t", "g", "c", 0, 10) == []


@pytest.mark.redis
def test_redis_stream_deleted_under_a_blocked_read(redis_open: Open, raw: redis.Redis) -> None:
    ps = redis_open()
    ps.read_new("t", "g", "c", 1, 0)  # make the group
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(ps.read_new, "t", "g", "c", 10, 20)
        wait_until(lambda: redis_blocked(raw))
        raw.delete(KEY + "t")  # the blocked XREADGROUP fails with UNBLOCKED
        wait_until(lambda: redis_blocked(raw) or reading.done())
        message_id = ps.publish("t", b"after", {})
        assert [m.id for m in reading.result(10)] == [message_id]


@pytest.mark.redis
def test_redis_entries_added_by_hand(redis_open: Open, raw: redis.Redis) -> None:
    ps = redis_open()
    raw.xadd(KEY + "t", {"data": b"raw"})
    raw.xadd(KEY + "t", {"other": b"x", "metadata": b"not json"})
    first, second = ps.read_new("t", "g", "c", 10, 0)
    assert (first.data, dict(first.metadata)) == (b"raw", {})
    assert (second.data, dict(second.metadata)) == (b"", {})


@pytest.mark.redis
def test_redis_long_block_does_not_trip_read_timeout(redis_open: Open) -> None:
    ps = redis_open(readTimeout="200")
    start = time.monotonic()
    assert ps.read_new("t", "g", "c", 10, 1.5) == []
    assert 1.4 <= time.monotonic() - start < 4


@pytest.mark.redis
def test_redis_unreachable_is_backend_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"
    metadata = {"redisHost": address, "dialTimeout": "200", "readTimeout": "200", "maxRetries": "0"}
    ps = make("redis", metadata)
    try:
        for call in (
            ps.ping,
            lambda: ps.publish("t", b"x", {}),
            lambda: ps.read_new("t", "g", "c", 1, 0),
            lambda: ps.read_new("t", "g", "c", 1, 0.1),
            lambda: ps.read_pending("t", "g", "c", 1),
            lambda: ps.claim_idle("t", "g", "c", 0, 1),
            lambda: ps.record_retry("t", "g", "c", "1-0"),
            lambda: ps.release("t", "g", "c", ["1-0"]),
            lambda: ps.ack("t", "g", ["1-0"]),
        ):
            with pytest.raises(BackendUnavailableError, match=address):
                call()
    finally:
        ps.close()


def test_released_messages_are_claimed_at_once(ps: PubSub) -> None:
    for n in range(3):
        ps.publish("t", f"m{n}".encode(), {})
    taken = ps.read_new("t", "g", "leaving", 3, 0)
    assert [m.data for m in taken] == [b"m0", b"m1", b"m2"]
    # Without a release, a long min idle finds nothing to claim.
    assert ps.claim_idle("t", "g", "other", 3600, 10) == []
    ps.release("t", "g", "leaving", [m.id for m in taken[1:]])
    claimed = ps.claim_idle("t", "g", "other", 3600, 10)
    assert [m.data for m in claimed] == [b"m1", b"m2"]
    # Claimed means fresh again for the claimer.
    assert ps.claim_idle("t", "g", "third", 3600, 10) == []


def test_release_never_gives_away_another_consumers_message(ps: PubSub) -> None:
    ps.publish("t", b"x", {})
    (message,) = ps.read_new("t", "g", "owner", 1, 0)
    ps.release("t", "g", "someone-else", [message.id])
    assert ps.claim_idle("t", "g", "other", 3600, 10) == []


def test_memory_topic_keeps_only_the_last_max_len_messages() -> None:
    ps = make("in-memory", {"maxLenApprox": "3"})
    try:
        ps.publish("t", b"m1", {})
        (first,) = ps.read_new("t", "early", "c", 1, 0)  # pending on "early"
        for n in range(2, 6):
            ps.publish("t", f"m{n}".encode(), {})
        # A new group sees only what is kept; the trimmed pending entry is gone.
        assert [m.data for m in ps.read_new("t", "late", "c", 10, 0)] == [b"m3", b"m4", b"m5"]
        assert ps.read_pending("t", "early", "c", 10) == []
        assert [m.data for m in ps.read_new("t", "early", "c", 10, 0)] == [b"m3", b"m4", b"m5"]
        assert first.data == b"m1"
        (sixth,) = [ps.publish("t", b"m6", {})]
        assert [m.id for m in ps.read_new("t", "late", "c", 10, 0)] == [sixth]
    finally:
        ps.close()


def test_memory_max_len_must_be_positive() -> None:
    with pytest.raises(InvalidRequestError, match="maxLenApprox"):
        make("in-memory", {"maxLenApprox": "0"})


@pytest.mark.redis
def test_redis_forget_consumer_only_when_nothing_is_pending(
    redis_open: Open, raw: redis.Redis
) -> None:
    ps = redis_open()
    ps.publish("t", b"1", {})
    ps.publish("t", b"2", {})
    (done,) = ps.read_new("t", "g", "finished", 1, 0)
    ps.ack("t", "g", [done.id])
    ps.read_new("t", "g", "holding", 1, 0)  # stays pending
    ps.forget_consumer("t", "g", "finished")
    ps.forget_consumer("t", "g", "holding")
    ps.forget_consumer("t", "nogroup", "anyone")  # nothing to do, no error
    names = {c["name"] for c in raw.xinfo_consumers(KEY + "t", "g")}
    assert names == {b"holding"}
    # the kept consumer's message can still be claimed
    assert [m.data for m in ps.claim_idle("t", "g", "other", 0, 10)] == [b"2"]
