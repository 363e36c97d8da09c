"""Lock conformance (Dapr's lock suite plus keep-alive and a race), run on every backend.

Also checks the shared Redis connection metadata parsing, which lock and
sequencer backends both go through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from layotto.components import _redis
from layotto.components.errors import BackendUnavailableError, InvalidRequestError
from layotto.components.lock.base import LockStatus, LockStore
from layotto.components.registry import build
from tests.redis_server import free_port

BACKENDS = ["in-memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Iterator[LockStore]:
    redis = request.param == "redis"
    metadata = {"redisHost": request.getfixturevalue("redis_addr")} if redis else {}
    lock: LockStore = build("lock", request.param, "lockstore", metadata, "app")
    yield lock
    lock.close()


def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_ping(store: LockStore) -> None:
    store.ping()


def test_acquire_is_not_reentrant(store: LockStore) -> None:
    assert store.try_lock("lock1", "owner1", 15)
    assert store.try_lock("lock2", "owner1", 1)
    assert not store.try_lock("lock1", "owner1", 15)
    assert not store.try_lock("lock1", "owner2", 15)


def test_unlock(store: LockStore) -> None:
    assert store.try_lock("lock1", "owner1", 15)
    assert store.unlock("no-such-lock", "owner1") is LockStatus.LOCK_UNEXIST
    assert store.unlock("lock1", "owner2") is LockStatus.LOCK_BELONG_TO_OTHERS
    assert store.unlock("lock1", "owner1") is LockStatus.SUCCESS
    assert store.unlock("lock1", "owner1") is LockStatus.LOCK_UNEXIST
    assert store.try_lock("lock1", "owner2", 15)


def test_lock_expires(store: LockStore) -> None:
    assert store.try_lock("lock2", "owner1", 1)
    assert not store.try_lock("lock2", "owner2", 1)
    # Unlock by a stranger never changes the lock, so it is a safe probe.
    eventually(lambda: store.unlock("lock2", "stranger") is LockStatus.LOCK_UNEXIST)
    assert store.unlock("lock2", "owner1") is LockStatus.LOCK_UNEXIST
    assert store.keep_alive("lock2", "owner1", 5) is LockStatus.LOCK_UNEXIST
    assert store.try_lock("lock2", "owner2", 5)


def test_keep_alive_extends_past_original_expiry(store: LockStore) -> None:
    start = time.monotonic()
    assert store.try_lock("res", "owner1", 1)
    assert store.keep_alive("res", "owner1", 5) is LockStatus.SUCCESS
    # Waiting for time itself to pass is the point of this test.
    time.sleep(max(0.0, start + 1.5 - time.monotonic()))
    assert not store.try_lock("res", "owner2", 5)
    assert store.unlock("res", "owner1") is LockStatus.SUCCESS


def test_keep_alive_of_others_or_missing(store: LockStore) -> None:
    assert store.try_lock("res", "owner1", 15)
    assert store.keep_alive("res", "owner2", 15) is LockStatus.LOCK_BELONG_TO_OTHERS
    assert store.keep_alive("missing", "owner1", 15) is LockStatus.LOCK_UNEXIST
    assert store.unlock("res", "owner1") is LockStatus.SUCCESS


@pytest.mark.parametrize("expire", [0, -1])
def test_expire_must_be_positive(store: LockStore, expire: int) -> None:
    with pytest.raises(InvalidRequestError):
        store.try_lock("res", "owner1", expire)
    assert store.try_lock("res", "owner1", 15)
    with pytest.raises(InvalidRequestError):
        store.keep_alive("res", "owner1", expire)


def test_race_has_one_winner(store: LockStore) -> None:
    contenders = 16
    barrier = threading.Barrier(contenders)

    def contend(i: int) -> bool:
        barrier.wait(timeout=5)
        return store.try_lock("contested", f"owner{i}", 15)

    with ThreadPoolExecutor(contenders) as pool:
        results = list(pool.map(contend, range(contenders)))
    assert results.count(True) == 1


@pytest.mark.redis
def test_redis_unreachable_is_backend_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"
    metadata = {"redisHost": address, "dialTimeout": "200", "readTimeout": "200", "maxRetries": "0"}
    lock: LockStore = build("lock", "redis", "lockstore", metadata, "app")
    try:
        for call in (
            lock.ping,
            lambda: lock.try_lock("r", "o", 5),
            lambda: lock.unlock("r", "o"),
            lambda: lock.keep_alive("r", "o", 5),
        ):
            with pytest.raises(BackendUnavailableError, match=address):
                call()
    finally:
        lock.close()


def test_redis_metadata_parsed() -> None:
    client = _redis.connect(
        {
            "redisHost": "db.example:6380",
            "redisDB": "2",
            "redisUsername": "u",
            "redisPassword": "p",
            "maxRetries": "5",
            "dialTimeout": "250",
            "readTimeout": "750",
        },
        "store",
    )
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("db.example", 6380, 2)
        assert (kwargs["username"], kwargs["password"]) == ("u", "p")
        assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.25, 0.75)
        assert kwargs["retry"].get_retries() == 5
    finally:
        client.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("redisHost", ""),
        ("redisHost", "localhost"),
        ("redisHost", "h:port"),
        ("redisHost", "h:0"),
        ("redisDB", "one"),
        ("redisDB", "-1"),
        ("enableTLS", "maybe"),
        ("maxRetries", "-1"),
        ("maxRetryBackoff", "1.5"),
        ("dialTimeout", "0"),
        ("readTimeout", "x"),
    ],
)
def test_redis_bad_metadata_names_key_and_component(key: str, value: str) -> None:
    metadata = {"redisHost": "127.0.0.1:6380", key: value}
    with pytest.raises(InvalidRequestError, match=f"'mystore'.*{key}"):
        _redis.connect(metadata, "mystore")


def test_redis_host_is_required() -> None:
    with pytest.raises(InvalidRequestError, match="redisHost"):
        _redis.connect({}, "mystore")
