"""Redis Streams pub/sub (the layout of Dapr's ``pubsub.redis``).

A topic is the stream ``layotto-pubsub|||<topic>``; a message is an entry with
fields ``data`` (the bytes) and ``metadata`` (a JSON object). Groups are made
lazily with ``XGROUP CREATE ... 0 MKSTREAM`` and made again when somebody
deleted the stream or group (NOGROUP, or UNBLOCKED under a blocked read).
Entries trimmed or deleted while still pending come back from Redis without
fields: they are acknowledged and skipped, or they would be redelivered forever.

A blocked ``XREADGROUP`` cannot be interrupted, so ``read_new`` blocks in
slices of at most ``_SLICE_MS`` on a second client whose socket timeout covers
a slice: ``close`` takes effect within one slice and a long wait never trips
the ``readTimeout`` meant for ordinary commands.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.typing import EncodableT, FieldT

from layotto.components import _redis
from layotto.components.pubsub.base import Message, check_count, check_ids
from layotto.components.pubsub.settings import max_len_approx

KEY_PREFIX = "layotto-pubsub|||"
_SLICE_MS = 1000
_T = TypeVar("_T")
_Entry = tuple[Any, Any]  # (id, fields) as redis-py parses a stream entry

# Release entries pending on this consumer only (a bare XCLAIM would also take
# over an entry another consumer claimed meanwhile): idle time ARGV[3] ms,
# delivery count lowered by ARGV[4] (JUSTID alone leaves the count as it is).
_RELEASE = """
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    local count = math.max(0, p[1][4] - tonumber(ARGV[4]))
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i],
               'IDLE', ARGV[3], 'RETRYCOUNT', count, 'JUSTID')
  end
end
return 0
"""
# One more delivery of an entry pending on this consumer, idle time reset;
# returns the count, or 0 when the entry is not pending on it.
_RECORD_RETRY = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not (p[1] and p[1][2] == ARGV[2]) then
  return 0
end
local count = p[1][4] + 1
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3],
           'IDLE', 0, 'RETRYCOUNT', count, 'JUSTID')
return count
"""
# The delivery counts of entries (0 for one that is not pending).
_DELIVERIES = """
local counts = {}
for i = 2, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  counts[i - 1] = p[1] and p[1][4] or 0
end
return counts
"""
# Delete a consumer only when nothing is pending on it: DELCONSUMER would
# drop its pending entries, which then nobody could claim.
_FORGET_CONSUMER = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""
# Idle time of a released entry: longer than any processingTimeout, shorter
# than the Unix time in ms (Redis ignores an IDLE reaching before 1970).
_RELEASED_IDLE_MS = 365 * 24 * 3600 * 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group_gone(exc: redis.ResponseError) -> bool:
    """Somebody deleted the stream or the group (UNBLOCKED: under a blocked read)."""
    text = str(exc)  # a script's error carries the code mid-message
    return "NOGROUP" in text or text.startswith("UNBLOCKED")


def _message(entry_id: Any, fields: Mapping[Any, Any]) -> Message:
    """A stream entry as a Message; entries XADDed by hand may lack our fields."""
    values = {_text(k): v for k, v in fields.items()}
    data = values.get("data", b"")
    try:
        raw = json.loads(values.get("metadata", b"{}"))
    except ValueError:
        raw = None
    metadata = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    return Message(
        _text(entry_id), data if isinstance(data, bytes) else str(data).encode(), metadata
    )


def _entries(reply: Any) -> list[_Entry]:
    """The entries of an XREADGROUP reply (RESP2, which ``_redis.connect`` speaks)."""
    return [entry for _, entries in reply or [] for entry in entries or []]


class RedisPubSub:
    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._address = metadata["redisHost"]
        self._max_len = max_len_approx(metadata, component) or 0  # 0: keep every message
        self._client = _redis.connect(metadata, component)
        self._probe = _redis.Probe(self._client, self._address)
        self._blocking = _redis.connect(metadata, component)
        # No connection exists yet, so this sets the timeout of every one to come.
        kwargs = self._blocking.connection_pool.connection_kwargs
        kwargs["socket_timeout"] = (kwargs.get("socket_timeout") or 0) + _SLICE_MS / 1000
        self._release_script = self._client.register_script(_RELEASE)
        self._record_retry_script = self._client.register_script(_RECORD_RETRY)
        self._deliveries_script = self._client.register_script(_DELIVERIES)
        self._forget_consumer = self._client.register_script(_FORGET_CONSUMER)
        self._groups: set[tuple[str, str]] = set()  # created by this instance
        self._groups_mutex = threading.Lock()
        self._closed = False
        self._readers = 0  # blocked reads under way; the last one out after close
        self._readers_mutex = threading.Lock()  # closes the blocking client

    def _ensure_group(self, key: str, group: str, again: bool = False) -> None:
        with self._groups_mutex:
            if (key, group) in self._groups and not again:
                return
        try:
            self._client.xgroup_create(key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        with self._groups_mutex:
            self._groups.add((key, group))

    def _in_group(self, key: str, group: str, call: Callable[[], _T]) -> _T:
        """``call`` with the group in place; recreated once if it has vanished."""
        with _redis.translated(self._address):
            self._ensure_group(key, group)
            try:
                return call()
            except redis.ResponseError as exc:
                if not _group_gone(exc):
                    raise
            self._ensure_group(key, group, again=True)
            return call()

    def _drop_deleted(self, key: str, group: str, entries: list[_Entry]) -> list[Message]:
        """Messages of the live entries; the deleted ones (no fields) are acked."""
        dead = [entry_id for entry_id, fields in entries if not fields]
        if dead:
            with _redis.translated(self._address):
                self._client.xack(key, group, *dead)
        return [_message(entry_id, fields) for entry_id, fields in entries if fields]

    def _counted(self, key: str, group: str, messages: list[Message]) -> list[Message]:
        """``messages`` with their delivery counts (a read of pending or claimed
        entries does not return them)."""
        if not messages:
            return messages
        with _redis.translated(self._address):
            counts = self._deliveries_script(keys=[key], args=[group, *(m.id for m in messages)])
        return [
            dataclasses.replace(m, deliveries=int(n)) for m, n in zip(messages, counts, strict=True)
        ]

    def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        fields: dict[FieldT, EncodableT] = {
            "data": bytes(data),
            "metadata": json.dumps(dict(metadata)),
        }
        with _redis.translated(self._address):
            entry_id = self._client.xadd(
                KEY_PREFIX + topic, fields, maxlen=self._max_len or None, approximate=True
            )
        return _text(entry_id)

    def read_new(
        self, topic: str, group: str, consumer: str, count: int, block_seconds: float
    ) -> list[Message]:
        check_count(count)
        with self._readers_mutex:
            if self._closed:
                return []
            self._readers += 1
        try:
            return self._read_new(KEY_PREFIX + topic, group, consumer, count, block_seconds)
        finally:
            with self._readers_mutex:
                self._readers -= 1
                if self._closed and not self._readers:
                    self._blocking.close()

    def _read_new(
        self, key: str, group: str, consumer: str, count: int, block_seconds: float
    ) -> list[Message]:
        deadline = time.monotonic() + max(0.0, block_seconds)
        while True:
            wait_ms = math.ceil((deadline - time.monotonic()) * 1000)
            # BLOCK 0 would wait forever: a wait that is over means no BLOCK at all.
            block = min(wait_ms, _SLICE_MS) if wait_ms > 0 else None

            def read(block: int | None = block) -> Any:
                return self._blocking.xreadgroup(
                    group, consumer, {key: ">"}, count=count, block=block
                )

            entries = _entries(self._in_group(key, group, read))
            if entries or block is None or self._closed:
                return self._drop_deleted(key, group, entries)

    def read_pending(self, topic: str, group: str, consumer: str, count: int) -> list[Message]:
        check_count(count)
        key = KEY_PREFIX + topic
        found: list[Message] = []
        after = "0"
        while len(found) < count:  # go on past deleted entries, up to count live ones
            want = count - len(found)

            def read(after: str = after, want: int = want) -> Any:
                return self._client.xreadgroup(group, consumer, {key: after}, count=want)

            entries = _entries(self._in_group(key, group, read))
            if not entries:
                break
            found += self._drop_deleted(key, group, entries)
            after = _text(entries[-1][0])
        return self._counted(key, group, found)

    def claim_idle(
        self, topic: str, group: str, consumer: str, min_idle_seconds: float, count: int
    ) -> list[Message]:
        check_count(count)
        key = KEY_PREFIX + topic
        idle_ms = max(0, math.ceil(min_idle_seconds * 1000))
        found: list[Message] = []
        cursor = "0-0"
        while len(found) < count:  # XAUTOCLAIM scans a bounded part of the PEL per call
            want = count - len(found)

            def claim(cursor: str = cursor, want: int = want) -> Any:
                return self._client.xautoclaim(
                    key, group, consumer, idle_ms, start_id=cursor, count=want
                )

            reply = self._in_group(key, group, claim)
            # Redis ≥ 7 drops deleted entries itself; 6.2 returns them without fields.
            found += self._drop_deleted(key, group, list(reply[1]))
            cursor = _text(reply[0])
            if cursor == "0-0":
                break
        return self._counted(key, group, found)

    def record_retry(self, topic: str, group: str, consumer: str, message_id: str) -> int:
        check_ids([message_id])
        with _redis.translated(self._address):
            try:
                return int(
                    self._record_retry_script(
                        keys=[KEY_PREFIX + topic], args=[group, consumer, message_id]
                    )
                )
            except redis.ResponseError as exc:
                if not _group_gone(exc):  # no group: nothing is pending
                    raise
                return 0

    def release(
        self,
        topic: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        *,
        undo_read: bool = False,
    ) -> None:
        check_ids(ids)
        if not ids:
            return
        args: list[EncodableT] = [group, consumer, _RELEASED_IDLE_MS, int(undo_read), *ids]
        with _redis.translated(self._address):
            try:
                self._release_script(keys=[KEY_PREFIX + topic], args=args)
            except redis.ResponseError as exc:
                if not _group_gone(exc):  # no group: nothing is pending
                    raise

    def forget_consumer(self, topic: str, group: str, consumer: str) -> None:
        with _redis.translated(self._address):
            try:
                self._forget_consumer(keys=[KEY_PREFIX + topic], args=[group, consumer])
            except redis.ResponseError as exc:
                if not _group_gone(exc):  # no group: no consumer either
                    raise

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> None:
        check_ids(ids)
        if ids:
            with _redis.translated(self._address):
                self._client.xack(KEY_PREFIX + topic, group, *ids)

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        with self._readers_mutex:
            self._closed = True
            if not self._readers:
                self._blocking.close()
        self._client.close()
        self._probe.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisPubSub:
    # consumerID, processingTimeout and redeliverInterval belong to the worker.
    return RedisPubSub(metadata, name)
