"""In-memory lock store: the reference backend for the conformance suite.

One dict guarded by one ``threading.Lock``; deadlines use the monotonic clock so
wall-clock jumps never release or extend a lock. An expired entry is treated as
absent everywhere (unlike Layotto's in-memory lock, whose Unlock ignores expiry),
so this backend answers exactly like the Redis one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from layotto.components.lock.base import LockStatus, check_expire

_MIN_SWEEP = 1024


class MemoryLockStore:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[str, float]] = {}  # resource -> (owner, deadline)
        self._sweep_at = _MIN_SWEEP

    def _owner(self, resource_id: str, now: float) -> str | None:
        entry = self._locks.get(resource_id)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._locks[resource_id]
            return None
        return entry[0]

    def _sweep(self, now: float) -> None:
        """Drop expired locks nobody asks about again, so the dict cannot grow forever."""
        if len(self._locks) >= self._sweep_at:
            self._locks = {r: e for r, e in self._locks.items() if e[1] > now}
            self._sweep_at = max(_MIN_SWEEP, 2 * len(self._locks))

    def try_lock(self, resource_id: str, owner: str, expire_seconds: int) -> bool:
        check_expire(expire_seconds)
        with self._mutex:
            now = time.monotonic()
            if self._owner(resource_id, now) is not None:
                return False
            self._sweep(now)
            self._locks[resource_id] = (owner, now + expire_seconds)
            return True

    def unlock(self, resource_id: str, owner: str) -> LockStatus:
        with self._mutex:
            holder = self._owner(resource_id, time.monotonic())
            if holder is None:
                return LockStatus.LOCK_UNEXIST
            if holder != owner:
                return LockStatus.LOCK_BELONG_TO_OTHERS
            del self._locks[resource_id]
            return LockStatus.SUCCESS

    def keep_alive(self, resource_id: str, owner: str, expire_seconds: int) -> LockStatus:
        check_expire(expire_seconds)
        with self._mutex:
            now = time.monotonic()
            holder = self._owner(resource_id, now)
            if holder is None:
                return LockStatus.LOCK_UNEXIST
            if holder != owner:
                return LockStatus.LOCK_BELONG_TO_OTHERS
            self._locks[resource_id] = (owner, now + expire_seconds)
            return LockStatus.SUCCESS

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def create(name: str, metadata: Mapping[str, str], app_id: str) -> MemoryLockStore:
    """``keyPrefix`` is applied by the worker, so no metadata is read here."""
    return MemoryLockStore()
