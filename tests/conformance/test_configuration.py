"""Configuration store conformance (Dapr's configuration suite plus watches), on every backend.

Watch tests wait on a queue with a timeout, never on sleeps. A Redis watcher
first gets the ``Resync`` of its new subscription; only after it may a test
rely on a change being announced, so ``listen`` waits for it there.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from redis.client import PubSub

from layotto.components.configuration import redis as config_redis
from layotto.components.configuration.base import (
    Changed,
    ConfigItem,
    ConfigurationStore,
    Notification,
    Resync,
    Scope,
    Watch,
)
from layotto.components.errors import (
    BackendUnavailableError,
    ComponentError,
    InvalidRequestError,
)
from layotto.components.registry import build
from tests.redis_server import free_port, running_redis

BACKENDS = ["in-memory", pytest.param("redis", marks=pytest.mark.redis)]
WAIT = 5.0  # seconds a notification may take before a test fails

SCOPE = Scope("app", "default", "default")


@dataclass
class Backend:
    type: str
    metadata: dict[str, str]
    stores: list[ConfigurationStore] = field(default_factory=list)

    def open(self) -> ConfigurationStore:
        """Another store on the same backend (for Redis: another sidecar)."""
        store: ConfigurationStore = build("config_store", self.type, "config", self.metadata, "app")
        self.stores.append(store)
        return store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    is_redis = request.param == "redis"
    metadata = {"redisHost": request.getfixturevalue("redis_addr")} if is_redis else {}
    chosen = Backend(request.param, metadata)
    yield chosen
    for store in chosen.stores:
        store.close()


@pytest.fixture
def store(backend: Backend) -> ConfigurationStore:
    return backend.open()


class Recorder:
    """A watcher that queues what it is told."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Notification] = queue.Queue()

    def __call__(self, notification: Notification) -> None:
        self.queue.put(notification)

    def next(self) -> Notification:
        try:
            return self.queue.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no notification within {WAIT} s")

    def changed(self) -> Changed:
        """The next ``Changed``, past any Resync (a reconnect may add one)."""
        while True:
            notification = self.next()
            if isinstance(notification, Changed):
                return notification

    def resync(self) -> None:
        assert isinstance(self.next(), Resync)

    def silent(self) -> bool:
        return self.queue.empty()


def listen(store: ConfigurationStore, backend: Backend, recorder: Recorder) -> Watch:
    watch = store.watch(recorder)
    if backend.type == "redis":
        recorder.resync()  # the subscription is made: later changes are announced
    return watch


def eventually(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until true; fail after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def item(key: str, content: str = "", **tags: str) -> ConfigItem:
    return ConfigItem(key, content or f"value of {key}", tags, {"source": "test"})


def assert_changed(change: Changed, scope: Scope, *keys: str) -> None:
    assert change.scope == scope
    assert sorted(change.keys) == sorted(keys)


def test_ping(store: ConfigurationStore) -> None:
    store.ping()


def test_get_listed_keys_returns_exactly_those(store: ConfigurationStore) -> None:
    saved = [
        ConfigItem("key1", "value1", {"tag": "a", "env": "prod"}, {"owner": "x"}),
        ConfigItem("key2", "value2"),
        ConfigItem("key3", "välue 3 ✓", {}, {"k": ""}),
    ]
    store.save(SCOPE, saved)
    assert store.get(SCOPE, ["key3", "key1"]) == [saved[0], saved[2]]
    assert store.get(SCOPE, ["key2"]) == [saved[1]]
    assert store.get(SCOPE, ["key1", "key1"]) == [saved[0]]


def test_empty_key_list_gets_every_item_of_the_scope_sorted(store: ConfigurationStore) -> None:
    saved = [item("b"), item("c", t="1"), item("a")]
    store.save(SCOPE, saved)
    store.save(Scope("app", "default", "other"), [item("z")])
    assert store.get(SCOPE, []) == sorted(saved, key=lambda i: i.key)


def test_missing_keys_are_left_out(store: ConfigurationStore) -> None:
    assert store.get(SCOPE, []) == []
    assert store.get(SCOPE, ["nope"]) == []
    store.save(SCOPE, [item("here")])
    assert store.get(SCOPE, ["nope", "here", "neither"]) == [item("here")]


def test_scopes_are_isolated(store: ConfigurationStore) -> None:
    scopes = [
        SCOPE,
        Scope("other-app", "default", "default"),
        Scope("app", "group2", "default"),
        Scope("app", "default", "label2"),
    ]
    for n, scope in enumerate(scopes):
        store.save(scope, [item("key", f"content {n}"), item(f"only-{n}")])
    for n, scope in enumerate(scopes):
        assert store.get(scope, ["key"]) == [item("key", f"content {n}")]
        assert [i.key for i in store.get(scope, [])] == ["key", f"only-{n}"]
    store.delete(scopes[0], ["key", "only-0"])
    assert store.get(scopes[0], []) == []
    for n, scope in enumerate(scopes[1:], start=1):
        assert [i.key for i in store.get(scope, [])] == ["key", f"only-{n}"]


def test_save_replaces_the_whole_item(store: ConfigurationStore) -> None:
    store.save(SCOPE, [ConfigItem("key", "old", {"t": "1"}, {"m": "1"}), item("other")])
    store.save(SCOPE, [ConfigItem("key", "new")])
    assert store.get(SCOPE, []) == [ConfigItem("key", "new"), item("other")]


def test_saved_item_is_a_copy(store: ConfigurationStore) -> None:
    tags = {"t": "1"}
    store.save(SCOPE, [ConfigItem("key", "v", tags)])
    tags["t"] = "changed"
    assert store.get(SCOPE, ["key"]) == [ConfigItem("key", "v", {"t": "1"})]


def test_delete_removes_and_ignores_missing_keys(store: ConfigurationStore) -> None:
    store.save(SCOPE, [item("a"), item("b"), item("c")])
    store.delete(SCOPE, ["a", "missing", "c"])
    assert store.get(SCOPE, []) == [item("b")]
    store.delete(SCOPE, ["a"])
    store.delete(Scope("nobody", "default", "default"), ["a"])
    assert store.get(SCOPE, []) == [item("b")]


def test_watchers_hear_saves_and_deletes(store: ConfigurationStore, backend: Backend) -> None:
    recorder = Recorder()
    listen(store, backend, recorder)
    other = Scope("other-app", "g", "l")
    store.save(SCOPE, [item("a"), item("b")])
    assert_changed(recorder.changed(), SCOPE, "a", "b")
    store.save(other, [item("a")])
    assert_changed(recorder.changed(), other, "a")
    store.delete(SCOPE, ["a", "missing"])
    change = recorder.changed()
    assert change.scope == SCOPE
    assert "a" in change.keys
    assert "b" not in change.keys


def test_watcher_may_read_the_store(store: ConfigurationStore, backend: Backend) -> None:
    """The worker re-reads from inside its callback: no lock may be held around it."""
    reads: queue.Queue[list[ConfigItem]] = queue.Queue()

    def reread(notification: Notification) -> None:
        if isinstance(notification, Changed):
            reads.put(store.get(notification.scope, notification.keys))

    listen(store, backend, Recorder())
    store.watch(reread)
    # Saved from a daemon thread, so that a deadlock fails the test instead of hanging it.
    threading.Thread(target=store.save, args=(SCOPE, [item("k")]), daemon=True).start()
    try:
        assert reads.get(timeout=WAIT) == [item("k")]
    except queue.Empty:
        pytest.fail(f"the watcher could not read the store within {WAIT} s")


def test_closing_one_watch_leaves_the_others(store: ConfigurationStore, backend: Backend) -> None:
    closed, kept = Recorder(), Recorder()
    watch = listen(store, backend, closed)
    listen(store, backend, kept)
    watch.close()
    watch.close()  # a second close must not unregister anybody else
    store.save(SCOPE, [item("k1")])
    assert_changed(kept.changed(), SCOPE, "k1")
    # Changes are delivered one after another, so once k2 reached ``kept``,
    # k1 has gone to every watcher it was ever going to reach.
    store.save(SCOPE, [item("k2")])
    assert_changed(kept.changed(), SCOPE, "k2")
    assert closed.silent()


def test_same_callback_watched_twice(store: ConfigurationStore, backend: Backend) -> None:
    recorder = Recorder()
    first = listen(store, backend, recorder)
    listen(store, backend, recorder)
    first.close()
    store.save(SCOPE, [item("k1")])
    assert_changed(recorder.changed(), SCOPE, "k1")
    store.save(SCOPE, [item("k2")])
    assert_changed(recorder.changed(), SCOPE, "k2")  # not k1 a second time
    assert recorder.silent()


def test_failing_watcher_harms_nobody(store: ConfigurationStore, backend: Backend) -> None:
    def broken(notification: Notification) -> None:
        raise RuntimeError("watcher bug")

    recorder = Recorder()
    store.watch(broken)
    listen(store, backend, recorder)
    store.save(SCOPE, [item("k1")])
    assert_changed(recorder.changed(), SCOPE, "k1")
    store.save(SCOPE, [item("k2")])
    assert_changed(recorder.changed(), SCOPE, "k2")
    assert store.get(SCOPE, ["k1", "k2"]) == [item("k1"), item("k2")]


def test_concurrent_saves_are_all_visible(store: ConfigurationStore, backend: Backend) -> None:
    writers, per_writer = 8, 25
    recorder = Recorder()
    listen(store, backend, recorder)
    barrier = threading.Barrier(writers)

    def write(w: int) -> None:
        barrier.wait(timeout=WAIT)
        for n in range(per_writer):
            store.save(SCOPE, [item(f"w{w}-{n}", f"from {w}")])

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    expected = sorted(f"w{w}-{n}" for w in range(writers) for n in range(per_writer))
    items = store.get(SCOPE, [])
    assert [i.key for i in items] == expected
    assert all(i.content == f"from {i.key[1:].split('-')[0]}" for i in items)
    heard: set[str] = set()
    while len(heard) < len(expected):
        heard.update(recorder.changed().keys)
    assert heard == set(expected)


# Redis only: what other processes on the same Redis see.


@pytest.fixture
def plain(redis_addr: str) -> Iterator[redis.Redis]:
    host, port = redis_addr.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


def redis_backend(address: str) -> Backend:
    return Backend("redis", {"redisHost": address})


def published(outsider: PubSub) -> dict[str, Any]:
    message: dict[str, Any] | None = outsider.get_message(timeout=WAIT)
    assert message is not None, f"nothing published within {WAIT} s"
    return message


@pytest.mark.redis
def test_redis_layout(redis_addr: str, plain: redis.Redis) -> None:
    """Another process that knows only the layout can read and follow the store."""
    store = redis_backend(redis_addr).open()
    outsider: PubSub = plain.pubsub()  # type: ignore[no-untyped-call]
    try:
        outsider.subscribe("layotto-config|||app")
        assert published(outsider)["type"] == "subscribe"
        store.save(Scope("app", "g", "l"), [ConfigItem("k", "v", {"t": "1"}, {"m": "2"})])
        raw = plain.hget("layotto-config|||app|||g|||l", "k")
        assert raw is not None
        assert json.loads(raw) == {"content": "v", "tags": {"t": "1"}, "metadata": {"m": "2"}}
        change = published(outsider)
        assert change["channel"] == b"layotto-config|||app"
        assert json.loads(change["data"]) == {"group": "g", "label": "l", "keys": ["k"]}
        store.delete(Scope("app", "g", "l"), ["k"])
        assert plain.exists("layotto-config|||app|||g|||l") == 0
        change = published(outsider)
        assert json.loads(change["data"]) == {"group": "g", "label": "l", "keys": ["k"]}
    finally:
        outsider.close()
        store.close()


@pytest.mark.redis
def test_redis_other_sidecar_notifies(redis_addr: str) -> None:
    backend = redis_backend(redis_addr)
    mine, theirs = backend.open(), backend.open()
    recorder = Recorder()
    try:
        listen(mine, backend, recorder)
        scope = Scope("app", "g", "l")
        theirs.save(scope, [item("shared")])
        assert_changed(recorder.changed(), scope, "shared")
        assert mine.get(scope, ["shared"]) == [item("shared")]
        theirs.delete(scope, ["shared"])
        assert_changed(recorder.changed(), scope, "shared")
        assert mine.get(scope, []) == []
    finally:
        for store in backend.stores:
            store.close()


@pytest.mark.redis
def test_redis_resync_on_start_and_after_reconnect(redis_addr: str, plain: redis.Redis) -> None:
    backend = redis_backend(redis_addr)
    store = backend.open()
    recorder = Recorder()
    try:
        store.watch(recorder)
        recorder.resync()
        assert plain.client_kill_filter(_type="pubsub") >= 1
        recorder.resync()
        store.save(SCOPE, [item("after")])
        assert_changed(recorder.changed(), SCOPE, "after")
        # and once more: the loop keeps reconnecting, not just the first time
        assert plain.client_kill_filter(_type="pubsub") >= 1
        recorder.resync()
        store.save(SCOPE, [item("again")])
        assert_changed(recorder.changed(), SCOPE, "again")
    finally:
        store.close()


@pytest.mark.redis
def test_redis_watch_outlives_a_server_restart() -> None:
    # A private server: stopping the session one would disturb other tests.
    with running_redis() as server:
        backend = redis_backend(server.address)
        store = backend.open()
        recorder = Recorder()
        try:
            store.watch(recorder)
            recorder.resync()
            server.stop()
            with pytest.raises(BackendUnavailableError):
                store.save(SCOPE, [item("lost")])
            server.start_again()
            recorder.resync()
            store.save(SCOPE, [item("back")])
            assert_changed(recorder.changed(), SCOPE, "back")
        finally:
            store.close()


@pytest.mark.redis
def test_redis_silent_server_is_probed(
    redis_addr: str, plain: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A paused server keeps the connection open but answers nothing, like a
    # peer gone without a FIN: only the subscriber's own PING can tell.
    monkeypatch.setattr(config_redis, "_PROBE_AFTER", 0.2)
    backend = Backend("redis", {"redisHost": redis_addr, "readTimeout": "300"})
    store = backend.open()
    recorder = Recorder()
    try:
        listen(store, backend, recorder)
        assert plain.client_pause(1500, all=True)
        recorder.resync()
        store.save(SCOPE, [item("k")])
        assert_changed(recorder.changed(), SCOPE, "k")
    finally:
        store.close()


@pytest.mark.redis
def test_redis_answered_probes_keep_the_subscription(
    redis_addr: str, plain: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_redis, "_PROBE_AFTER", 0.2)
    backend = Backend("redis", {"redisHost": redis_addr, "readTimeout": "300"})
    store = backend.open()
    recorder = Recorder()
    try:
        listen(store, backend, recorder)
        [subscriber] = plain.client_list(_type="pubsub")
        plain.config_resetstat()
        # Nobody else sends PING: three of them mean three probes were answered in time.
        eventually(lambda: plain.info("commandstats").get("cmdstat_ping", {}).get("calls", 0) >= 3)
        assert [c["id"] for c in plain.client_list(_type="pubsub")] == [subscriber["id"]]
        assert recorder.silent()  # no reconnect, so no Resync
    finally:
        store.close()


@pytest.mark.redis
def test_redis_watch_started_while_unreachable_then_closed() -> None:
    address = f"127.0.0.1:{free_port()}"
    store = redis_backend(address).open()
    recorder = Recorder()
    store.watch(recorder)
    threads = [t for t in threading.enumerate() if t.name.startswith("layotto-config-watch")]
    assert threads
    store.close()
    assert not any(t.is_alive() for t in threads)
    assert recorder.silent()


@pytest.mark.redis
def test_redis_close_stops_the_watch_thread(redis_addr: str) -> None:
    backend = redis_backend(redis_addr)
    store = backend.open()
    recorder = Recorder()
    listen(store, backend, recorder)
    threads = [t for t in threading.enumerate() if t.name.startswith("layotto-config-watch")]
    assert len(threads) == 1
    store.close()
    assert not threads[0].is_alive()


@pytest.mark.redis
def test_redis_malformed_message_is_ignored(redis_addr: str, plain: redis.Redis) -> None:
    backend = redis_backend(redis_addr)
    store = backend.open()
    recorder = Recorder()
    try:
        listen(store, backend, recorder)
        for junk in (
            b"not json",
            b"\xff\xfe",
            b"[1, 2]",
            b'{"group": "g", "label": "l"}',
            b'{"group": "g", "label": 1, "keys": ["k"]}',
            b'{"group": "g", "label": "l", "keys": "k"}',
        ):
            assert plain.publish("layotto-config|||app", junk) == 1
        assert plain.publish(b"layotto-config|||\xff", b'{"group":"g","label":"l","keys":[]}')
        # a well-formed message from any publisher is a change like any other
        assert plain.publish("layotto-config|||x", b'{"group":"g","label":"l","keys":["k"]}')
        assert recorder.next() == Changed(Scope("x", "g", "l"), ("k",))
        store.save(SCOPE, [item("fine")])
        assert_changed(recorder.changed(), SCOPE, "fine")
        assert recorder.silent()
    finally:
        store.close()


@pytest.mark.redis
def test_redis_stored_value_in_another_layout_is_an_error(
    redis_addr: str, plain: redis.Redis
) -> None:
    store = redis_backend(redis_addr).open()
    try:
        for junk in (b"plain text", b'{"content": 5}', b'{"content": "v", "tags": {"t": 1}}'):
            plain.hset("layotto-config|||app|||default|||default", "bad", junk)
            with pytest.raises(ComponentError, match="bad"):
                store.get(SCOPE, ["bad"])
            with pytest.raises(ComponentError, match="bad"):
                store.get(SCOPE, [])
    finally:
        store.close()


@pytest.mark.redis
@pytest.mark.parametrize("scope", [Scope("a|||b", "g", "l"), Scope("a", "g|||x", "l")])
def test_redis_separator_in_scope_is_refused(redis_addr: str, scope: Scope) -> None:
    store = redis_backend(redis_addr).open()
    try:
        for call in (
            lambda: store.get(scope, []),
            lambda: store.save(scope, [item("k")]),
            lambda: store.delete(scope, ["k"]),
        ):
            with pytest.raises(InvalidRequestError, match=re.escape("|||")):
                call()
    finally:
        store.close()


@pytest.mark.redis
def test_redis_unreachable_is_backend_unavailable() -> None:
    address = f"127.0.0.1:{free_port()}"
    metadata = {"redisHost": address, "dialTimeout": "200", "readTimeout": "200", "maxRetries": "0"}
    store: ConfigurationStore = build("config_store", "redis", "config", metadata, "app")
    try:
        for call in (
            store.ping,
            lambda: store.get(SCOPE, ["k"]),
            lambda: store.get(SCOPE, []),
            lambda: store.save(SCOPE, [item("k")]),
            lambda: store.delete(SCOPE, ["k"]),
        ):
            with pytest.raises(BackendUnavailableError, match=address):
                call()
    finally:
        store.close()
