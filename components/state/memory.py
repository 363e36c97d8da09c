"""In-memory state store: the reference backend for the conformance suite.

It answers exactly like the Redis store (real versions as etags, first-write,
TTL, ordered all-or-nothing transactions), unlike Layotto's in-memory mock.
One dict guarded by one ``threading.Lock``. Expiry deadlines use the monotonic
clock, checked lazily on access plus an amortised sweep; the wall clock only
dates ``ttlExpireTime``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from layotto.components.state._ops import (
    EXPIRE_TIME_KEY,
    Op,
    OpStore,
    Outcome,
    check,
    default_ttl,
    expire_time_text,
)
from layotto.components.state.base import BulkGetItem, Consistency, GetResponse

_MIN_SWEEP = 1024


@dataclass(frozen=True)
class _Entry:
    data: bytes
    version: int
    deadline: float | None = None  # time.monotonic() at which the key expires
    expires_at: float | None = None  # the same moment on the wall clock (Unix time)

    def metadata(self) -> dict[str, str]:
        if self.expires_at is None:
            return {}
        return {EXPIRE_TIME_KEY: expire_time_text(self.expires_at)}


class MemoryStateStore(OpStore):
    def __init__(self, default_ttl: int | None = None) -> None:
        super().__init__(default_ttl)
        self._mutex = threading.Lock()
        self._items: dict[str, _Entry] = {}
        self._sweep_at = _MIN_SWEEP

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._items.get(key)
        if entry is not None and entry.deadline is not None and entry.deadline <= now:
            del self._items[key]
            return None
        return entry

    def _sweep(self, now: float) -> None:
        """Drop expired keys nobody reads again, so the dict cannot grow forever."""
        if len(self._items) >= self._sweep_at:
            self._items = {
                key: entry
                for key, entry in self._items.items()
                if entry.deadline is None or entry.deadline > now
            }
            self._sweep_at = max(_MIN_SWEEP, 2 * len(self._items))

    def _apply(self, op: Op, now: float) -> None:
        current = self._live(op.key, now)
        if not op.upsert:
            self._items.pop(op.key, None)
            return
        version = (current.version if current else 0) + 1
        if op.ttl is None:
            self._items[op.key] = _Entry(op.data, version)
        else:
            self._items[op.key] = _Entry(op.data, version, now + op.ttl, time.time() + op.ttl)

    def run(self, ops: Sequence[Op], atomic: bool) -> list[Outcome]:
        with self._mutex:
            now = time.monotonic()
            self._sweep(now)
            versions: dict[str, int | None] = {}  # the state as the checked ops leave it
            outcomes: list[Outcome] = []
            for op in ops:
                if op.key in versions:
                    version = versions[op.key]
                else:
                    entry = self._live(op.key, now)
                    version = entry.version if entry else None
                outcome = check(op, version)
                outcomes.append(outcome)
                if outcome is Outcome.OK:
                    versions[op.key] = (version or 0) + 1 if op.upsert else None
                    if not atomic:
                        self._apply(op, now)
                elif atomic:
                    return outcomes
            if atomic:
                for op in ops:
                    self._apply(op, now)
            return outcomes

    def get(self, key: str, consistency: Consistency = Consistency.UNSPECIFIED) -> GetResponse:
        with self._mutex:
            entry = self._live(key, time.monotonic())
        if entry is None:
            return GetResponse(None, None)
        return GetResponse(entry.data, str(entry.version), entry.metadata())

    def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        with self._mutex:
            now = time.monotonic()
            entries = [self._live(key, now) for key in keys]
        return [
            BulkGetItem(key, None, None)
            if entry is None
            else BulkGetItem(key, entry.data, str(entry.version), metadata=entry.metadata())
            for key, entry in zip(keys, entries, strict=True)
        ]

    def ping(self) -> None:
        pass

    def close(self) -> None:
        with self._mutex:
            self._items.clear()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> MemoryStateStore:
    return MemoryStateStore(default_ttl(metadata, name))
