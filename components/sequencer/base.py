"""The sequencer building block: unique, increasing int64 ids per key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from layotto.components.errors import InvalidRequestError, OutOfRangeError

# Ids are int64 on the wire: no counter ever moves past the last one.
MAX_ID = 2**63 - 1


def exhausted(key: str) -> OutOfRangeError:
    return OutOfRangeError(f"sequencer key {key!r} has handed out its last id ({MAX_ID})")


class SequencerStore(Protocol):
    """Blocking and thread-safe. Keys are already prefixed by the worker."""

    def ensure_bigger_than(self, floors: Mapping[str, int]) -> None:
        """Make every later id of each key greater than its floor (config ``biggerThan``)."""
        ...

    def next_id(self, key: str) -> int:
        """STRONG: one id straight from the store; OutOfRangeError past MAX_ID."""
        ...

    def next_segment(self, key: str, size: int) -> tuple[int, int]:
        """WEAK: reserve ``size`` ids; returns the inclusive range (first, last),
        shorter only where it reaches MAX_ID; OutOfRangeError when none is left."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def check_size(size: int) -> None:
    if size < 1:
        raise InvalidRequestError(f"segment size must be ≥ 1, got {size}")
