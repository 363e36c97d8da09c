"""In-memory pub/sub: an in-process copy of Redis Streams' consumer groups.

Per topic, a log of messages with ids ``"<n>-0"`` (n = 1, 2, ...); per group,
the last delivered n and a pending table n -> (consumer, delivery time,
delivery count), counted as XPENDING counts. Like
``XGROUP CREATE ... 0`` a new group starts at the beginning of the log, so it
also sees messages published before it existed; the log keeps the last
``maxLenApprox`` messages (default 10000), like ``XADD ... MAXLEN``: a trimmed
message that was still pending is gone from the pending table too. One lock
guards everything; each topic has a ``Condition`` on that lock so a blocked
``read_new`` wakes on its own topic's publish (or ``close``), never by
polling. Idle times use the monotonic clock.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from layotto.components.pubsub.base import MESSAGE_ID, Message, check_count, check_ids
from layotto.components.pubsub.settings import max_len_approx


def _seq(message_id: str) -> int | None:
    """The log position of one of our ids; None for an id this backend never made."""
    match = MESSAGE_ID.fullmatch(message_id)
    if match is None or int(match.group(2) or 0) != 0:
        return None
    return int(match.group(1))


@dataclass(frozen=True)
class _Pending:
    consumer: str
    since: float  # time.monotonic() of the last delivery or retry; -inf: released
    deliveries: int


@dataclass
class _Group:
    last: int = 0  # position of the last message delivered to the group
    # Positions are inserted in increasing order, so dict order is id order.
    pending: dict[int, _Pending] = field(default_factory=dict)

    def deliver(self, position: int, consumer: str, now: float) -> int:
        """Hand a message to ``consumer``, counting one delivery; returns the count."""
        before = self.pending.get(position)
        count = (before.deliveries if before else 0) + 1
        self.pending[position] = _Pending(consumer, now, count)
        return count


@dataclass
class _Topic:
    changed: threading.Condition
    log: list[Message] = field(default_factory=list)  # position n is log[n - 1 - trimmed]
    groups: dict[str, _Group] = field(default_factory=dict)
    trimmed: int = 0  # messages dropped from the front of the log

    def at(self, position: int) -> Message:
        return self.log[position - 1 - self.trimmed]

    def trim(self, max_len: int) -> None:
        excess = len(self.log) - max_len
        if excess <= 0:
            return
        del self.log[:excess]
        self.trimmed += excess
        for g in self.groups.values():
            g.last = max(g.last, self.trimmed)
            for n in [n for n in g.pending if n <= self.trimmed]:
                del g.pending[n]


DEFAULT_MAX_LEN = 10000


class MemoryPubSub:
    def __init__(self, max_len: int = DEFAULT_MAX_LEN) -> None:
        self._max_len = max_len
        self._mutex = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._closed = False

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(threading.Condition(self._mutex))
        return topic

    def _group(self, topic: str, group: str) -> tuple[_Topic, _Group]:
        t = self._topic(topic)
        return t, t.groups.setdefault(group, _Group())

    def _existing_group(self, topic: str, group: str) -> _Group:
        """The group, or an empty stand-in: acking or touching creates nothing."""
        t = self._topics.get(topic)
        return t.groups.get(group, _Group()) if t else _Group()

    def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        with self._mutex:
            t = self._topic(topic)
            message = Message(f"{t.trimmed + len(t.log) + 1}-0", bytes(data), dict(metadata))
            t.log.append(message)
            t.trim(self._max_len)
            t.changed.notify_all()
        return message.id

    def read_new(
        self, topic: str, group: str, consumer: str, count: int, block_seconds: float
    ) -> list[Message]:
        check_count(count)
        deadline = time.monotonic() + max(0.0, block_seconds)
        with self._mutex:
            t, g = self._group(topic, group)
            while True:
                if self._closed:
                    return []
                g.last = max(g.last, t.trimmed)  # a new group starts at the oldest kept
                start = g.last - t.trimmed
                batch = t.log[start : start + count]
                if batch:
                    now = time.monotonic()
                    for position in range(g.last + 1, g.last + len(batch) + 1):
                        g.deliver(position, consumer, now)
                    g.last += len(batch)
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                t.changed.wait(remaining)

    def read_pending(self, topic: str, group: str, consumer: str, count: int) -> list[Message]:
        check_count(count)
        with self._mutex:
            t, g = self._group(topic, group)
            mine = [n for n, p in g.pending.items() if p.consumer == consumer][:count]
            now = time.monotonic()
            # A redelivery counts as a delivery, as in XREADGROUP.
            return [_counted(t.at(n), g.deliver(n, consumer, now)) for n in mine]

    def claim_idle(
        self, topic: str, group: str, consumer: str, min_idle_seconds: float, count: int
    ) -> list[Message]:
        check_count(count)
        with self._mutex:
            t, g = self._group(topic, group)
            now = time.monotonic()
            idle = [n for n, p in g.pending.items() if now - p.since >= min_idle_seconds]
            # XAUTOCLAIM counts a delivery too.
            return [_counted(t.at(n), g.deliver(n, consumer, now)) for n in idle[:count]]

    def record_retry(self, topic: str, group: str, consumer: str, message_id: str) -> int:
        check_ids([message_id])
        n = _seq(message_id)
        with self._mutex:
            g = self._existing_group(topic, group)
            entry = g.pending.get(n) if n is not None else None
            # Only the consumer's own entry: never steal one another consumer claimed.
            if n is None or entry is None or entry.consumer != consumer:
                return 0
            return g.deliver(n, consumer, time.monotonic())

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
        with self._mutex:
            g = self._existing_group(topic, group)
            for n in map(_seq, ids):
                entry = g.pending.get(n) if n is not None else None
                if n is not None and entry is not None and entry.consumer == consumer:
                    count = max(0, entry.deliveries - 1) if undo_read else entry.deliveries
                    g.pending[n] = _Pending(consumer, -math.inf, count)

    def forget_consumer(self, topic: str, group: str, consumer: str) -> None:
        pass  # consumers exist here only through their pending entries

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> None:
        check_ids(ids)
        with self._mutex:
            g = self._existing_group(topic, group)
            for n in map(_seq, ids):
                if n is not None:
                    g.pending.pop(n, None)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        with self._mutex:
            self._closed = True
            for t in self._topics.values():
                t.changed.notify_all()


def _counted(message: Message, deliveries: int) -> Message:
    return dataclasses.replace(message, deliveries=deliveries)


def create(name: str, metadata: Mapping[str, str], app_id: str) -> MemoryPubSub:
    # consumerID, processingTimeout and redeliverInterval belong to the worker.
    max_len = max_len_approx(metadata, name)
    return MemoryPubSub(DEFAULT_MAX_LEN if max_len is None else max_len)
