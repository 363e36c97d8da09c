"""The distributed lock building block (Layotto's lock API semantics)."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from layotto.components.errors import InvalidRequestError


class LockStatus(IntEnum):
    """Values equal Layotto's UnlockResponse.Status / LockKeepAliveResponse.Status."""

    SUCCESS = 0
    LOCK_UNEXIST = 1
    LOCK_BELONG_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class LockStore(Protocol):
    """Non-blocking, non-re-entrant locks with expiry. Blocking and thread-safe."""

    def try_lock(self, resource_id: str, owner: str, expire_seconds: int) -> bool:
        """True when acquired; False when held by anyone (the same owner included)."""
        ...

    def unlock(self, resource_id: str, owner: str) -> LockStatus: ...

    def keep_alive(self, resource_id: str, owner: str, expire_seconds: int) -> LockStatus:
        """Reset the expiry of a lock held by ``owner`` to ``expire_seconds`` from now."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def check_expire(expire_seconds: int) -> None:
    if expire_seconds <= 0:
        raise InvalidRequestError(f"expire must be > 0 seconds, got {expire_seconds}")
