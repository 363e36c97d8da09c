"""Redis configuration store, shared by every sidecar on the same Redis.

Layout: one hash per scope, ``layotto-config|||<app_id>|||<group>|||<label>``,
field = item key, value = JSON ``{"content", "tags", "metadata"}``. Every save
or delete changes the hash and PUBLISHes ``{"group", "label", "keys"}`` on
``layotto-config|||<app_id>`` in one MULTI/EXEC, so no change goes unannounced.

Watching is one background thread per store with its own connection,
PSUBSCRIBEd to ``layotto-config|||*``. Pub/sub is fire-and-forget: whatever is
published while the subscription is down is lost, so each time it is (re)made
every watcher gets ``Resync`` and re-reads. The thread reconnects by itself
(redis-py's retry is off on its connection, so every drop is seen here) with
a bounded backoff, and never dies of a Redis error.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.client import PubSub

from layotto.components import _redis
from layotto.components.configuration.base import (
    Changed,
    ConfigItem,
    Notification,
    Resync,
    Scope,
    Watchers,
    WatchHandle,
    unique,
)
from layotto.components.errors import ComponentError, InvalidRequestError

log = logging.getLogger(__name__)

PREFIX = "layotto-config"
SEPARATOR = "|||"
PATTERN = f"{PREFIX}{SEPARATOR}*"

_MIN_BACKOFF = 0.1  # seconds before the first reconnect attempt, doubled after each failure
_MAX_BACKOFF = 2.0
_POLL = 0.1  # longest wait for a message, i.e. how late the thread notices close()
_PROBE_AFTER = 5.0  # PING a subscription that was silent this long (a dead peer may never say so)


def hash_key(scope: Scope) -> str:
    return SEPARATOR.join((PREFIX, scope.app_id, scope.group, scope.label))


def channel(app_id: str) -> str:
    return f"{PREFIX}{SEPARATOR}{app_id}"


def _check(scope: Scope) -> None:
    # "a|||b" + "c" and "a" + "b|||c" would share one hash.
    for part in (scope.app_id, scope.group, scope.label):
        if SEPARATOR in part:
            raise InvalidRequestError(f"{part!r}: the redis config store forbids {SEPARATOR!r}")


class MalformedError(ValueError):
    """Something in Redis (a stored item, a published change) is not in this store's layout."""


def _encode(item: ConfigItem) -> str:
    value = {"content": item.content, "tags": dict(item.tags), "metadata": dict(item.metadata)}
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise MalformedError("tags and metadata must map strings to strings")
    return value


def _decode(key: str, raw: bytes | str) -> ConfigItem:
    value = json.loads(raw)
    if not isinstance(value, dict) or not isinstance(value.get("content", ""), str):
        raise MalformedError('not a JSON object with a string "content"')
    return ConfigItem(
        key,
        value.get("content", ""),
        _strings(value.get("tags", {})),
        _strings(value.get("metadata", {})),
    )


def parse_notification(channel_name: bytes, data: bytes) -> Changed:
    """A published change as ``Changed``; ``ValueError`` when it is not one."""
    app_id = channel_name.decode().removeprefix(f"{PREFIX}{SEPARATOR}")
    body = json.loads(data)
    if not isinstance(body, dict):
        raise MalformedError("not a JSON object")
    group, label, keys = body.get("group"), body.get("label"), body.get("keys")
    if not isinstance(group, str) or not isinstance(label, str):
        raise MalformedError("group and label must be strings")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise MalformedError("keys must be a list of strings")
    return Changed(Scope(app_id, group, label), tuple(keys))


class RedisConfigurationStore:
    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._client = _redis.connect(metadata, component)
        # The subscription's own client: no redis-py retry, so a drop reaches _listen.
        self._pubsub_client = _redis.connect({**metadata, "maxRetries": "0"}, component)
        self._address = metadata["redisHost"].strip()
        self._probe = _redis.Probe(self._client, self._address)
        self._component = component
        kwargs = self._pubsub_client.connection_pool.connection_kwargs
        self._dial_timeout = float(kwargs["socket_connect_timeout"])
        self._read_timeout = float(kwargs["socket_timeout"])
        self._watchers = Watchers()
        self._stop = threading.Event()
        self._mutex = threading.Lock()  # guards the three fields below
        self._unwelcomed: list[WatchHandle] = []  # watches still owed their first Resync
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        _check(scope)
        name = hash_key(scope)
        with _redis.translated(self._address):
            if keys:
                wanted = unique(keys)
                values = self._client.hmget(name, list(wanted))
                found = {k: v for k, v in zip(wanted, values, strict=True) if v is not None}
            else:
                every = self._client.hgetall(name)
                found = {_text(k): v for k, v in every.items()}
        items = []
        for key in sorted(found):
            try:
                items.append(_decode(key, found[key]))
            except ValueError as exc:  # written by something other than this store
                raise ComponentError(f"redis at {self._address}: {name} {key!r}: {exc}") from exc
        return items

    def _write(
        self, scope: Scope, keys: tuple[str, ...], change: Callable[[Any, str], object]
    ) -> None:
        """Apply ``change(pipeline, hash_key)`` and announce ``keys``, in one MULTI/EXEC."""
        message = json.dumps({"group": scope.group, "label": scope.label, "keys": list(keys)})
        with _redis.translated(self._address), self._client.pipeline(transaction=True) as pipe:
            change(pipe, hash_key(scope))
            pipe.publish(channel(scope.app_id), message)
            pipe.execute()

    def save(self, scope: Scope, items: Sequence[ConfigItem]) -> None:
        _check(scope)
        if not items:
            return
        values = {item.key: _encode(item) for item in items}
        self._write(scope, tuple(values), lambda pipe, name: pipe.hset(name, mapping=values))

    def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        _check(scope)
        if not keys:
            return
        fields = unique(keys)
        self._write(scope, fields, lambda pipe, name: pipe.hdel(name, *fields))

    def watch(self, notify: Callable[[Notification], None]) -> WatchHandle:
        with self._mutex:
            watch = self._watchers.add(notify)
            if self._closed:
                watch.close()  # nothing is left to watch
                return watch
            # Changes from before the subscription is made are only covered by a Resync.
            self._unwelcomed.append(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name=f"layotto-config-watch-{self._component}", daemon=True
                )
                self._thread.start()
        return watch

    def _welcome(self, everyone: bool) -> None:
        """Resync every watcher (a new subscription), or just the ones added since."""
        with self._mutex:
            new, self._unwelcomed = self._unwelcomed, []
        if everyone:
            self._watchers.call(Resync())
        elif new:
            self._watchers.call(Resync(), among=new)

    def _listen(self) -> None:
        backoff = _MIN_BACKOFF
        healthy = True  # log the first failure of a run of them, not every retry
        while not self._stop.is_set():
            pubsub: PubSub = self._pubsub_client.pubsub()
            try:
                self._subscribe(pubsub)
                if self._stop.is_set():
                    return
                if not healthy:
                    log.info("redis at %s: configuration subscription is back", self._address)
                healthy, backoff = True, _MIN_BACKOFF
                self._welcome(everyone=True)
                self._relay(pubsub)
            except (redis.RedisError, OSError) as exc:
                if healthy:
                    log.warning(
                        "redis at %s: configuration subscription lost (%s); retrying",
                        self._address,
                        exc,
                    )
                healthy = False
            except Exception:  # a bug must not end watching for good either
                log.exception("redis at %s: configuration subscription failed", self._address)
                healthy = False
            finally:
                pubsub.close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _subscribe(self, pubsub: PubSub) -> None:
        """PSUBSCRIBE and wait for the server's confirmation: only from then on
        is every later change sure to reach us, which is what Resync relies on."""
        pubsub.psubscribe(PATTERN)
        deadline = time.monotonic() + self._read_timeout
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=_POLL)
            if message is not None and message["type"] == "psubscribe":
                return
            if time.monotonic() > deadline:
                raise redis.TimeoutError("no PSUBSCRIBE confirmation")

    def _relay(self, pubsub: PubSub) -> None:
        """Turn messages into notifications until stopped; raise when the link fails."""
        heard = time.monotonic()
        probed: float | None = None  # when the unanswered PING was sent
        while not self._stop.is_set():
            self._welcome(everyone=False)
            message = pubsub.get_message(timeout=_POLL)
            now = time.monotonic()
            if message is None:
                if probed is not None and now - probed > self._read_timeout:
                    raise redis.TimeoutError("no answer to PING")
                if probed is None and now - heard > _PROBE_AFTER:
                    pubsub.ping()
                    probed = now
                continue
            heard, probed = now, None
            if message["type"] != "pmessage":
                continue
            try:
                change = parse_notification(message["channel"], message["data"])
            except ValueError as exc:  # JSON and UTF-8 errors are ValueErrors too
                log.warning(
                    "redis at %s: ignoring malformed message on %r: %s",
                    self._address,
                    message["channel"],
                    exc,
                )
                continue
            self._watchers.call(change)

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            thread, self._thread = self._thread, None
        self._stop.set()
        # A watcher may close the store from its callback, i.e. on the thread itself.
        if thread is not None and thread is not threading.current_thread():
            # A connect under way is the longest the thread can be busy.
            thread.join(self._dial_timeout + _POLL + 1)
            if thread.is_alive():
                log.warning("redis at %s: configuration watch thread did not stop", self._address)
        self._watchers.clear()
        self._pubsub_client.close()
        self._client.close()
        self._probe.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisConfigurationStore:
    return RedisConfigurationStore(metadata, name)
