"""The sequencer building block: unique, increasing int64 ids per key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from layotto.components.errors import InvalidRequestError


class SequencerStore(Protocol):
    """Blocking and thread-safe. Keys are already prefixed by the worker."""

    def ensure_bigger_than(self, floors: Mapping[str, int]) -> None:
        """Make every later id of each key greater than its floor (config ``biggerThan``)."""
        ...

    def next_id(self, key: str) -> int:
        """STRONG: one id straight from the store."""
        ...

    def next_segment(self, key: str, size: int) -> tuple[int, int]:
        """WEAK: reserve ``size`` ids; returns the inclusive range (first, last)."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def check_size(size: int) -> None:
    if size < 1:
        raise InvalidRequestError(f"segment size must be ≥ 1, got {size}")
