"""State conformance suite, run against every backend (Dapr's tests/conformance/state,
reference/dapr-api.md §5, plus the etag/TTL/atomicity semantics of docs on the Protocol).

Values are stored as the bytes a client sends: Dapr's scenarios JSON-encode everything
but raw byte slices, so the scenarios below are those encodings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import redis

from layotto.components import registry
from layotto.components.errors import (
    BackendUnavailableError,
    BulkError,
    ETagInvalidError,
    ETagMismatchError,
    InvalidRequestError,
)
from layotto.components.state.base import (
    Concurrency,
    Consistency,
    DeleteRequest,
    SetRequest,
    StateStore,
    TransactionOp,
)
from tests.redis_server import free_port

SCENARIOS = {
    "int": b"123",
    "bool": b"true",
    "bytes": bytes([1]),
    "json-string": json.dumps('{"a": "b"}').encode(),
    "string": json.dumps("hello world").encode(),
    "empty-string": json.dumps("").encode(),
    "empty-bytes": b"",
    "struct": json.dumps({"message": "test", "count": 3}).encode(),
    "binary": bytes(range(256)),
}


def make(kind: str, metadata: Mapping[str, str] | None = None) -> StateStore:
    return cast(StateStore, registry.build("state", kind, "conformance", metadata or {}, "app"))


@pytest.fixture(params=["in-memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Callable[..., StateStore]:
    """Builds stores of the backend under test: ``backend(**component_metadata)``."""
    stores: list[StateStore] = []
    base = {"redisHost": request.getfixturevalue("redis_addr")} if request.param == "redis" else {}

    def build(**metadata: str) -> StateStore:
        stores.append(make(request.param, {**base, **metadata}))
        return stores[-1]

    def close_all() -> None:
        for store in stores:
            store.close()

    request.addfinalizer(close_all)
    return build


@pytest.fixture
def store(backend: Callable[..., StateStore]) -> StateStore:
    return backend()


def upsert(
    key: str, value: bytes = b"v", etag: str | None = None, **metadata: str
) -> TransactionOp:
    return TransactionOp(SetRequest(key, value, etag, metadata))


def delete(key: str, etag: str | None = None) -> TransactionOp:
    return TransactionOp(DeleteRequest(key, etag))


def etag_of(store: StateStore, key: str) -> str:
    etag = store.get(key).etag
    assert etag
    return etag


def wait_until_missing(store: StateStore, key: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while store.get(key).data is not None:
        assert time.monotonic() < deadline, f"{key} did not expire within {timeout} s"
        time.sleep(0.05)


# --- basic CRUD -------------------------------------------------------------------------


def test_ping(store: StateStore) -> None:
    store.ping()


def test_set_get_round_trips(store: StateStore) -> None:
    for key, value in SCENARIOS.items():
        store.set(SetRequest(key, value, metadata={"contentType": "application/json"}))
    for key, value in SCENARIOS.items():
        got = store.get(key, Consistency.STRONG)
        assert (got.data, got.etag) == (value, "1")
        assert got.metadata == {}


def test_get_missing_key(store: StateStore) -> None:
    got = store.get("never-set")
    assert (got.data, got.etag) == (None, None)


def test_delete_including_never_set_keys(store: StateStore) -> None:
    store.set(SetRequest("to-delete", b"1"))
    store.delete(DeleteRequest("to-delete"))
    store.delete(DeleteRequest("never-set"))
    assert store.get("to-delete").data is None
    assert store.get("never-set").data is None


def test_bulk_set_then_bulk_get(store: StateStore) -> None:
    store.bulk_set([SetRequest(k, v) for k, v in SCENARIOS.items()])
    items = store.bulk_get([*SCENARIOS, "not-there"])
    assert [item.key for item in items] == [*SCENARIOS, "not-there"]
    assert [item.data for item in items] == [*SCENARIOS.values(), None]
    assert [item.etag for item in items] == ["1"] * len(SCENARIOS) + [None]
    assert all(item.error == "" for item in items)
    assert store.bulk_get([]) == []


def test_bulk_delete(store: StateStore) -> None:
    store.bulk_set([SetRequest("a", b"1"), SetRequest("b", b"2")])
    store.bulk_delete([DeleteRequest("a"), DeleteRequest("b"), DeleteRequest("never-set")])
    assert [item.data for item in store.bulk_get(["a", "b"])] == [None, None]


def test_every_write_bumps_the_version(store: StateStore) -> None:
    for version in range(1, 5):
        store.set(SetRequest("k", str(version).encode()))
        assert store.get("k").etag == str(version)
    store.delete(DeleteRequest("k"))
    store.set(SetRequest("k", b"again"))
    assert store.get("k").etag == "1"


# --- transactions ------------------------------------------------------------------------


def test_transaction_groups(store: StateStore) -> None:
    store.transact([upsert("t1", b"1"), upsert("t2", b"2"), upsert("t3", b"3")])
    assert [i.data for i in store.bulk_get(["t1", "t2", "t3"])] == [b"1", b"2", b"3"]
    store.transact([delete("t1"), delete("t2"), upsert("t4", b"4"), upsert("t3", b"33")])
    items = store.bulk_get(["t1", "t2", "t3", "t4"])
    assert [(i.data, i.etag) for i in items] == [
        (None, None),
        (None, None),
        (b"33", "2"),
        (b"4", "1"),
    ]
    store.transact([])


def test_transaction_delete_of_missing_key(store: StateStore) -> None:
    store.transact([delete("never-set"), upsert("x", b"1")])
    assert store.get("x").data == b"1"


def test_transaction_order(store: StateStore) -> None:
    store.set(SetRequest("k1", b"old"))
    store.transact([delete("k1"), upsert("k2", b"value2"), delete("k2"), upsert("k3", b"value3")])
    assert [i.data for i in store.bulk_get(["k1", "k2", "k3"])] == [None, None, b"value3"]


def test_transaction_checks_etags_against_the_evolving_state(store: StateStore) -> None:
    store.set(SetRequest("k", b"1"))
    store.transact([upsert("k", b"2", etag="1"), upsert("k", b"3", etag="2")])
    assert (store.get("k").data, store.get("k").etag) == (b"3", "3")
    with pytest.raises(ETagMismatchError):
        store.transact([delete("k"), upsert("k", b"4", etag="3")])  # deleted, so no version 3
    assert store.get("k").etag == "3"


def test_transaction_mismatch_in_last_op_applies_nothing(store: StateStore) -> None:
    store.bulk_set([SetRequest("a", b"a1"), SetRequest("gone", b"g1"), SetRequest("z", b"z1")])
    with pytest.raises(ETagMismatchError, match="'z'"):
        store.transact(
            [upsert("a", b"a2"), delete("gone"), upsert("new", b"n"), upsert("z", b"z2", etag="7")]
        )
    items = store.bulk_get(["a", "gone", "new", "z"])
    assert [(i.data, i.etag) for i in items] == [
        (b"a1", "1"),
        (b"g1", "1"),
        (None, None),
        (b"z1", "1"),
    ]


def test_transaction_with_invalid_etag_or_ttl_applies_nothing(store: StateStore) -> None:
    with pytest.raises(ETagInvalidError):
        store.transact([upsert("a"), upsert("b", etag="not-a-number")])
    with pytest.raises(InvalidRequestError):
        store.transact([upsert("a"), upsert("b", ttlInSeconds="soon")])
    assert store.get("a").data is None


def test_transaction_first_write(store: StateStore) -> None:
    store.set(SetRequest("taken", b"1"))
    first = SetRequest("taken", b"2", concurrency=Concurrency.FIRST_WRITE)
    with pytest.raises(ETagMismatchError):
        store.transact([upsert("free"), TransactionOp(first)])
    assert store.get("free").data is None


# --- etags -------------------------------------------------------------------------------


def test_etags_are_non_empty(store: StateStore) -> None:
    store.bulk_set([SetRequest("e1", b"1"), SetRequest("e2", b"2"), SetRequest("e3", b"3")])
    store.set(SetRequest("e4", b"4"))
    assert all(store.get(k).etag for k in ("e1", "e2", "e3", "e4"))
    assert all(item.etag for item in store.bulk_get(["e1", "e2", "e3", "e4"]))


def test_set_with_etag(store: StateStore) -> None:
    store.set(SetRequest("k", b"1"))
    etag = etag_of(store, "k")
    with pytest.raises(ETagMismatchError):
        store.set(SetRequest("k", b"2", etag="9999999"))
    store.set(SetRequest("k", b"2", etag=etag))
    assert store.get("k").data == b"2"
    assert etag_of(store, "k") != etag
    with pytest.raises(ETagMismatchError):
        store.set(SetRequest("k", b"3", etag=etag))  # the old etag is stale now
    with pytest.raises(ETagMismatchError):
        store.set(SetRequest("missing", b"1", etag="1"))
    assert store.get("missing").data is None


def test_etag_is_checked_whatever_the_concurrency(store: StateStore) -> None:
    store.set(SetRequest("k", b"1"))
    with pytest.raises(ETagMismatchError):
        store.set(SetRequest("k", b"2", etag="5", concurrency=Concurrency.LAST_WRITE))
    store.set(SetRequest("k", b"2", concurrency=Concurrency.LAST_WRITE))
    assert store.get("k").data == b"2"


@pytest.mark.parametrize("bad", ["bad-etag", "1.5", "-1", " 1", "\u0661"])
def test_invalid_etag(store: StateStore, bad: str) -> None:
    store.set(SetRequest("k", b"1"))
    with pytest.raises(ETagInvalidError):
        store.set(SetRequest("k", b"2", etag=bad))
    with pytest.raises(ETagInvalidError):
        store.delete(DeleteRequest("k", etag=bad))
    assert store.get("k").data == b"1"


def test_bulk_set_with_one_bad_etag_is_partial(store: StateStore) -> None:
    store.bulk_set([SetRequest("good", b"1"), SetRequest("bad", b"1")])
    good, bad = etag_of(store, "good"), etag_of(store, "bad")
    with pytest.raises(BulkError) as caught:
        store.bulk_set([SetRequest("bad", b"2", etag="9999999"), SetRequest("good", b"2", good)])
    assert [e.key for e in caught.value.errors] == ["bad"]
    assert isinstance(caught.value.errors[0].cause, ETagMismatchError)
    assert store.get("good").data == b"2"
    assert etag_of(store, "good") != good
    assert (store.get("bad").data, etag_of(store, "bad")) == (b"1", bad)
    store.bulk_set([SetRequest("bad", b"3", bad), SetRequest("good", b"3", etag_of(store, "good"))])
    assert [i.data for i in store.bulk_get(["bad", "good"])] == [b"3", b"3"]


def test_bulk_set_reports_invalid_etag_and_ttl_per_key(store: StateStore) -> None:
    with pytest.raises(BulkError) as caught:
        store.bulk_set(
            [
                SetRequest("a", b"1", etag="x"),
                SetRequest("b", b"1"),
                SetRequest("c", b"1", metadata={"ttlInSeconds": "foo"}),
            ]
        )
    assert [(e.key, type(e.cause)) for e in caught.value.errors] == [
        ("a", ETagInvalidError),
        ("c", InvalidRequestError),
    ]
    assert [i.data for i in store.bulk_get(["a", "b", "c"])] == [None, b"1", None]


def test_delete_with_etag(store: StateStore) -> None:
    store.set(SetRequest("k", b"1"))
    with pytest.raises(ETagMismatchError):
        store.delete(DeleteRequest("k", etag="9999999"))
    assert store.get("k").data == b"1"
    store.delete(DeleteRequest("k", etag=etag_of(store, "k")))
    assert (store.get("k").data, store.get("k").etag) == (None, None)
    with pytest.raises(ETagMismatchError):
        store.delete(DeleteRequest("k", etag="1"))


def test_bulk_delete_with_one_bad_etag_is_partial(store: StateStore) -> None:
    store.bulk_set([SetRequest("a", b"1"), SetRequest("b", b"1")])
    with pytest.raises(BulkError) as caught:
        store.bulk_delete([DeleteRequest("a", etag="9999999"), DeleteRequest("b", etag="1")])
    assert [e.key for e in caught.value.errors] == ["a"]
    assert [i.data for i in store.bulk_get(["a", "b"])] == [b"1", None]
    store.bulk_delete([DeleteRequest("a", etag=etag_of(store, "a"))])
    assert [(i.data, i.etag) for i in store.bulk_get(["a", "b"])] == [(None, None)] * 2


def test_bulk_set_of_one_key_twice_sees_its_own_writes(store: StateStore) -> None:
    store.set(SetRequest("k", b"1"))
    with pytest.raises(BulkError) as caught:
        store.bulk_set([SetRequest("k", b"2", etag="1"), SetRequest("k", b"3", etag="1")])
    assert len(caught.value.errors) == 1
    assert (store.get("k").data, store.get("k").etag) == (b"2", "2")


# --- first-write -------------------------------------------------------------------------


def test_first_write_without_etag(store: StateStore) -> None:
    store.delete(DeleteRequest("fw"))
    request = SetRequest(
        "fw", b"1", concurrency=Concurrency.FIRST_WRITE, consistency=Consistency.STRONG
    )
    store.set(request)
    with pytest.raises(ETagMismatchError):
        store.set(request)
    assert store.get("fw").etag == "1"
    with pytest.raises(BulkError):
        store.bulk_set([request])


def test_first_write_with_etag(store: StateStore) -> None:
    store.set(SetRequest("fw", b"1"))
    etag = etag_of(store, "fw")
    store.set(SetRequest("fw", b"2", etag=etag, concurrency=Concurrency.FIRST_WRITE))
    assert etag_of(store, "fw") != etag
    with pytest.raises(ETagMismatchError):
        store.set(SetRequest("fw", b"3", etag=etag, concurrency=Concurrency.FIRST_WRITE))
    assert store.get("fw").data == b"2"


# --- TTL ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["foo", "1.5", "-2", "99999999999", "1s"])
def test_bad_ttl_is_rejected(store: StateStore, bad: str) -> None:
    with pytest.raises(InvalidRequestError, match="ttlInSeconds"):
        store.set(SetRequest("k", b"1", metadata={"ttlInSeconds": bad}))
    assert store.get("k").data is None


def test_ttl_expires_and_minus_one_or_absent_removes_it(store: StateStore) -> None:
    # Give "kept" and "plain" a 1 s TTL before "expiring", so once "expiring" has
    # expired their old TTLs would have too: they are the witnesses of its removal.
    store.bulk_set(
        [SetRequest(k, b"old", metadata={"ttlInSeconds": "1"}) for k in ("kept", "plain")]
    )
    store.set(SetRequest("expiring", b"1", metadata={"ttlInSeconds": "1"}))
    store.set(SetRequest("kept", b"new", metadata={"ttlInSeconds": "-1"}))
    store.set(SetRequest("plain", b"new"))
    assert store.get("expiring").data == b"1"
    assert "ttlExpireTime" in store.get("expiring").metadata
    assert store.get("kept").metadata == {}
    assert store.get("plain").metadata == {}
    wait_until_missing(store, "expiring")
    assert store.get("expiring").etag is None
    assert store.bulk_get(["expiring"])[0].data is None
    assert [i.data for i in store.bulk_get(["kept", "plain"])] == [b"new", b"new"]
    with pytest.raises(ETagMismatchError):  # an expired key has no version left
        store.set(SetRequest("expiring", b"2", etag="1"))
    store.set(SetRequest("expiring", b"2", concurrency=Concurrency.FIRST_WRITE))
    assert store.get("expiring").etag == "1"


def test_ttl_expire_time(store: StateStore) -> None:
    store.set(SetRequest("k", b"1", metadata={"ttlInSeconds": "3600"}))
    for metadata in (store.get("k").metadata, store.bulk_get(["k"])[0].metadata):
        expires = datetime.fromisoformat(metadata["ttlExpireTime"])
        assert expires.tzinfo is not None
        expected = datetime.now(UTC) + timedelta(hours=1)
        assert abs(expires - expected) < timedelta(minutes=10)
    store.set(SetRequest("k", b"2", metadata={"ttlInSeconds": "0"}))
    assert store.get("k").metadata == {}


def test_transaction_ttl(store: StateStore) -> None:
    store.transact([upsert("a", ttlInSeconds="3600"), upsert("b")])
    assert "ttlExpireTime" in store.get("a").metadata
    assert store.get("b").metadata == {}


def test_component_default_ttl(backend: Callable[..., StateStore]) -> None:
    store = backend(ttlInSeconds="3600")
    store.set(SetRequest("default", b"1"))
    store.set(SetRequest("forever", b"1", metadata={"ttlInSeconds": "-1"}))
    store.set(SetRequest("short", b"1", metadata={"ttlInSeconds": "60"}))
    assert "ttlExpireTime" in store.get("default").metadata
    assert store.get("forever").metadata == {}
    short = datetime.fromisoformat(store.get("short").metadata["ttlExpireTime"])
    assert short < datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(InvalidRequestError, match="ttlInSeconds"):
        backend(ttlInSeconds="forever")


# --- concurrency -------------------------------------------------------------------------


def _in_threads(count: int, work: Callable[[], None]) -> None:
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:
            failures.append(exc)
            raise

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failures
    assert not any(thread.is_alive() for thread in threads)


def test_concurrent_increments_with_etags(store: StateStore) -> None:
    store.set(SetRequest("counter", b"0"))

    def increment_50_times() -> None:
        for _ in range(50):
            while True:
                got = store.get("counter")
                assert got.data is not None
                try:
                    store.set(SetRequest("counter", str(int(got.data) + 1).encode(), got.etag))
                    break
                except ETagMismatchError:
                    continue

    _in_threads(8, increment_50_times)
    assert store.get("counter").data == b"400"


def test_concurrent_transactions_are_atomic(store: StateStore) -> None:
    store.bulk_set([SetRequest("left", b"0"), SetRequest("right", b"0")])

    def move_25_times() -> None:
        for _ in range(25):
            while True:
                left, right = store.bulk_get(["left", "right"])
                assert left.data is not None and right.data is not None
                try:
                    store.transact(
                        [
                            upsert("left", str(int(left.data) - 1).encode(), left.etag),
                            upsert("right", str(int(right.data) + 1).encode(), right.etag),
                        ]
                    )
                    break
                except ETagMismatchError:
                    continue

    _in_threads(4, move_25_times)
    assert [i.data for i in store.bulk_get(["left", "right"])] == [b"-100", b"100"]


# --- Redis only --------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_layout_is_a_dapr_hash(redis_addr: str, redis_client: redis.Redis) -> None:
    store = make("redis", {"redisHost": redis_addr})
    client = redis_client
    try:
        store.set(SetRequest("app||k", b"\x00value", metadata={"ttlInSeconds": "100"}))
        store.set(SetRequest("app||k", b"\x00value2"))
        assert client.type("app||k") == b"hash"
        assert client.hgetall("app||k") == {b"data": b"\x00value2", b"version": b"2"}
        assert client.ttl("app||k") == -1
        client.hset("dapr-written", mapping={"data": "x", "version": "7"})
        assert (store.get("dapr-written").data, store.get("dapr-written").etag) == (b"x", "7")
        client.set("legacy", b"plain")  # pre-hash layout: data without etag
        assert (store.get("legacy").data, store.get("legacy").etag) == (b"plain", None)
        store.set(SetRequest("legacy", b"now-a-hash"))
        assert client.hgetall("legacy") == {b"data": b"now-a-hash", b"version": b"1"}
    finally:
        store.close()


@pytest.mark.redis
def test_redis_scripts_survive_a_script_flush(redis_addr: str, redis_client: redis.Redis) -> None:
    # A restarted (or failed-over) Redis has no cached scripts: EVALSHA gets
    # NOSCRIPT and the store must load its script again, reads and writes alike.
    store = make("redis", {"redisHost": redis_addr})
    try:
        store.set(SetRequest("flushed", b"v1"))
        redis_client.script_flush()
        assert store.get("flushed").data == b"v1"
        redis_client.script_flush()
        store.set(SetRequest("flushed", b"v2", etag="1"))
        assert (store.get("flushed").data, store.get("flushed").etag) == (b"v2", "2")
    finally:
        store.close()


@pytest.mark.redis
def test_redis_unreachable_is_backend_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    store = make(
        "redis",
        {"redisHost": address, "maxRetries": "0", "dialTimeout": "200", "readTimeout": "200"},
    )
    started = time.monotonic()
    try:
        for call in (store.ping, lambda: store.get("k"), lambda: store.set(SetRequest("k", b""))):
            with pytest.raises(BackendUnavailableError, match=address):
                call()
    finally:
        store.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("metadata", "named"),
    [
        ({}, "redisHost"),
        ({"redisHost": "localhost"}, "redisHost"),
        ({"redisHost": "localhost:http"}, "redisHost"),
        ({"redisDB": "one"}, "redisDB"),
        ({"maxRetries": "-1"}, "maxRetries"),
        ({"maxRetryBackoff": "2s"}, "maxRetryBackoff"),
        ({"dialTimeout": "0"}, "dialTimeout"),
        ({"readTimeout": "x"}, "readTimeout"),
        ({"enableTLS": "yes"}, "enableTLS"),
        ({"ttlInSeconds": "foo"}, "ttlInSeconds"),
    ],
)
def test_redis_bad_metadata(metadata: dict[str, str], named: str) -> None:
    full = {"redisHost": "127.0.0.1:1", **metadata} if metadata else {}
    with pytest.raises(InvalidRequestError, match=named):
        make("redis", full)


@pytest.mark.redis
def test_redis_connection_metadata(redis_addr: str) -> None:
    store = make(
        "redis",
        {
            "redisHost": redis_addr,
            "redisDB": "3",
            "enableTLS": "false",
            "maxRetries": "1",
            "maxRetryBackoff": "100",
            "redisPassword": "",
        },
    )
    host, port = redis_addr.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), db=3)
    try:
        store.set(SetRequest("in-db-3", b"1"))
        assert client.exists("in-db-3") == 1
    finally:
        client.close()
        store.close()
