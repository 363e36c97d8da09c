"""Sequencer conformance: STRONG ids, WEAK ids via SegmentCache, floors, on every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_py

from layotto.boundary.status import Code, code_of
from layotto.components.errors import (
    BackendUnavailableError,
    ComponentError,
    InvalidRequestError,
    OutOfRangeError,
)
from layotto.components.registry import build
from layotto.components.sequencer.base import MAX_ID, SequencerStore
from layotto.components.sequencer.memory import MemorySequencer
from layotto.components.sequencer.redis import RedisSequencer
from layotto.components.sequencer.segments import DEFAULT_STEP, SegmentCache
from tests.redis_server import free_port

# "in-memory, marks": as the sidecar runs it, with a state file; every handle
# is a new store on that file, as a restarted worker is.
BACKENDS = ["in-memory", "in-memory, marks", pytest.param("redis", marks=pytest.mark.redis)]

Opener = Callable[..., SequencerStore]


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest) -> Iterator[Opener]:
    """Opens a handle onto one backend's data, as a (re)started worker would.

    Redis handles are independent clients; in-memory data lives in one object,
    so every handle is that object.
    """
    base = {"redisHost": request.getfixturevalue("redis_addr")} if request.param == "redis" else {}
    type_, _, marks = request.param.partition(", ")
    state_file = str(request.getfixturevalue("tmp_path") / "state-seq") if marks else None
    opened: list[SequencerStore] = []
    memory: list[SequencerStore] = []

    def open_(metadata: Mapping[str, str] | None = None) -> SequencerStore:
        if memory and metadata is None:
            return memory[0]
        merged = {**base, **(metadata or {})}
        store: SequencerStore = build(
            "sequencer", type_, "seq", merged, "app", state_file=state_file
        )
        opened.append(store)
        if request.param == "in-memory" and metadata is None:
            memory.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> SequencerStore:
    return open_store()


def test_ping(store: SequencerStore) -> None:
    store.ping()


def test_strong_counts_from_one(store: SequencerStore) -> None:
    assert [store.next_id("k") for _ in range(10)] == list(range(1, 11))
    assert store.next_id("other") == 1


@pytest.mark.parametrize("step", [DEFAULT_STEP, 3])
def test_weak_counts_from_one(store: SequencerStore, step: int) -> None:
    cache = SegmentCache(store, step)
    assert [cache.next_id("k") for _ in range(10)] == list(range(1, 11))
    assert cache.next_id("other") == 1


def test_segment_is_an_inclusive_range(store: SequencerStore) -> None:
    assert store.next_segment("k", 5) == (1, 5)
    assert store.next_id("k") == 6
    assert store.next_segment("k", 1) == (7, 7)
    with pytest.raises(InvalidRequestError):
        store.next_segment("k", 0)


def _parallel(fetch: Callable[[], int], threads: int = 8, each: int = 200) -> list[list[int]]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: [fetch() for _ in range(each)], range(threads)))


def test_strong_ids_unique_under_threads(store: SequencerStore) -> None:
    runs = _parallel(lambda: store.next_id("k"))
    assert sorted(i for run in runs for i in run) == list(range(1, 1601))
    assert all(run == sorted(run) for run in runs)


def test_weak_ids_unique_under_threads(store: SequencerStore) -> None:
    cache = SegmentCache(store, 7)
    runs = _parallel(lambda: cache.next_id("k"))
    ids = [i for run in runs for i in run]
    assert len(set(ids)) == len(ids) == 1600
    assert all(run == sorted(run) for run in runs)


def test_two_workers_never_share_an_id(open_store: Opener) -> None:
    first, second = SegmentCache(open_store(), 5), SegmentCache(open_store(), 5)
    ids = [cache.next_id("k") for _ in range(23) for cache in (first, second)]
    assert len(set(ids)) == len(ids)


def test_restarted_worker_continues_above(open_store: Opener) -> None:
    old = SegmentCache(open_store(), 10)
    handed_out = [old.next_id("k") for _ in range(3)]
    del old
    assert SegmentCache(open_store(), 10).next_id("k") > max(handed_out)
    assert open_store().next_id("k") > max(handed_out)


def test_bigger_than(store: SequencerStore) -> None:
    store.ensure_bigger_than({"strong": 100, "weak": 50, "zero": 0, "negative": -5})
    assert store.next_id("strong") == 101
    assert SegmentCache(store, 10).next_id("weak") == 51
    assert store.next_id("zero") == 1
    assert store.next_id("negative") == 1


def test_lower_floor_changes_nothing(store: SequencerStore) -> None:
    for _ in range(3):
        store.next_id("k")
    store.ensure_bigger_than({"k": 2})
    assert store.next_id("k") == 4


def step_of(store: SequencerStore) -> int:
    assert isinstance(store, MemorySequencer | RedisSequencer)
    return store.segment_step


def test_segment_step_metadata(open_store: Opener) -> None:
    assert step_of(open_store()) == DEFAULT_STEP
    assert step_of(open_store({"segmentStep": "25"})) == 25


@pytest.mark.parametrize("value", ["0", "-3", "ten", "", "1.5"])
def test_bad_segment_step(open_store: Opener, value: str) -> None:
    with pytest.raises(InvalidRequestError, match="segmentStep"):
        open_store({"segmentStep": value})


@pytest.mark.redis
def test_redis_unreachable_is_backend_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"
    metadata = {"redisHost": address, "dialTimeout": "200", "readTimeout": "200", "maxRetries": "0"}
    store: SequencerStore = build("sequencer", "redis", "seq", metadata, "app")
    try:
        for call in (
            store.ping,
            lambda: store.next_id("k"),
            lambda: store.next_segment("k", 5),
            lambda: store.ensure_bigger_than({"k": 5}),
        ):
            with pytest.raises(BackendUnavailableError, match=address):
                call()
        with pytest.raises(BackendUnavailableError):
            SegmentCache(store).next_id("k")
    finally:
        store.close()


@pytest.mark.redis
def test_redis_refusing_a_command_is_not_unavailable(redis_addr: str) -> None:
    """A server-side refusal (here: INCR on a non-number) will not heal by
    retrying, so it must not be reported as UNAVAILABLE."""

    host, port = redis_addr.rsplit(":", 1)
    redis_py.Redis(host=host, port=int(port)).set("not-a-counter", "abc")
    store: SequencerStore = build("sequencer", "redis", "seq", {"redisHost": redis_addr}, "app")
    try:
        with pytest.raises(ComponentError) as caught:
            store.next_id("not-a-counter")
        assert not isinstance(caught.value, BackendUnavailableError)
    finally:
        store.close()


def test_strong_ids_stop_at_the_int64_limit(store: SequencerStore) -> None:
    store.ensure_bigger_than({"k": MAX_ID - 3})
    assert [store.next_id("k") for _ in range(3)] == [MAX_ID - 2, MAX_ID - 1, MAX_ID]
    for _ in range(2):  # the key stays usable for the answer, never moves past
        with pytest.raises(OutOfRangeError, match="'k'"):
            store.next_id("k")
    assert code_of(OutOfRangeError("x")) == Code.OUT_OF_RANGE


def test_weak_ids_use_every_id_up_to_the_limit(store: SequencerStore) -> None:
    store.ensure_bigger_than({"k": MAX_ID - 3})
    cache = SegmentCache(store, 10)
    assert [cache.next_id("k") for _ in range(3)] == [MAX_ID - 2, MAX_ID - 1, MAX_ID]
    with pytest.raises(OutOfRangeError):
        cache.next_id("k")
    with pytest.raises(OutOfRangeError):
        store.next_segment("k", 1)
