"""In-memory sequencer: the reference backend for the conformance suite.

Counters in a dict under one lock. Unlike Layotto's in-memory sequencer it honours
``biggerThan``, so it behaves exactly like the Redis backend.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from layotto.components.sequencer.base import MAX_ID, check_size, exhausted
from layotto.components.sequencer.segments import DEFAULT_STEP, parse_step


class MemorySequencer:
    def __init__(self, segment_step: int = DEFAULT_STEP) -> None:
        self.segment_step = segment_step
        self._mutex = threading.Lock()
        self._counters: dict[str, int] = {}

    def ensure_bigger_than(self, floors: Mapping[str, int]) -> None:
        with self._mutex:
            for key, floor in floors.items():
                self._counters[key] = max(self._counters.get(key, 0), floor)

    def next_id(self, key: str) -> int:
        return self.next_segment(key, 1)[1]

    def next_segment(self, key: str, size: int) -> tuple[int, int]:
        check_size(size)
        with self._mutex:
            current = self._counters.get(key, 0)
            if current >= MAX_ID:
                raise exhausted(key)
            last = min(current + size, MAX_ID)
            self._counters[key] = last
        return current + 1, last

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def create(name: str, metadata: Mapping[str, str], app_id: str) -> MemorySequencer:
    return MemorySequencer(parse_step(metadata, name))
