"""WEAK-mode id cache: serve ids from ranges reserved with ``next_segment``.

Layotto keeps a double buffer filled by a background goroutine; a plain per-key
range is enough here, because a reservation is one cheap round trip made every
``step`` ids. Every range comes from the store, so ids stay unique across
workers and increasing across restarts (a new cache reserves above all old ones).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from layotto.components.metadata import parse_int
from layotto.components.sequencer.base import SequencerStore

DEFAULT_STEP = 10000


def parse_step(metadata: Mapping[str, str], component: str) -> int:
    """The ``segmentStep`` metadata value (an int ≥ 1, default 10000)."""
    return parse_int(metadata, "segmentStep", DEFAULT_STEP, component, minimum=1)


@dataclass
class _Range:
    next: int = 1
    last: int = 0  # empty until the first reservation
    mutex: threading.Lock = field(default_factory=threading.Lock)


class SegmentCache:
    """Thread-safe; one reservation in flight per key, other keys are not held up."""

    def __init__(self, store: SequencerStore, step: int = DEFAULT_STEP) -> None:
        if step < 1:
            raise ValueError(f"step must be ≥ 1, got {step}")
        self._store = store
        self._step = step
        self._mutex = threading.Lock()
        self._ranges: dict[str, _Range] = {}

    def next_id(self, key: str) -> int:
        with self._mutex:
            current = self._ranges.setdefault(key, _Range())
        with current.mutex:
            if current.next > current.last:
                current.next, current.last = self._store.next_segment(key, self._step)
            value = current.next
            current.next += 1
            return value
