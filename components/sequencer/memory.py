"""In-memory sequencer: the reference backend for the conformance suite.

Counters in a dict under one lock. Unlike Layotto's in-memory sequencer it honours
``biggerThan``, so it behaves exactly like the Redis backend.

Given a ``state_file`` (the sidecar gives its worker one in the run
directory), it hands out ids only below marks written there first
(``marks.py``), so a worker killed and restarted continues above every id
handed out before: uniqueness survives the process, though nothing else
does. Without one (tests, embedding) it does no I/O at all.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from layotto.components.sequencer.base import MAX_ID, check_size, exhausted
from layotto.components.sequencer.marks import CHUNK, MarkLog
from layotto.components.sequencer.segments import DEFAULT_STEP, parse_step


class MemorySequencer:
    def __init__(self, segment_step: int = DEFAULT_STEP, marks: MarkLog | None = None) -> None:
        self.segment_step = segment_step
        self._mutex = threading.Lock()
        self._marks = marks
        # key -> the last id handed out, and (with marks) the last one reserved
        self._counters: dict[str, int] = dict(marks.marks) if marks else {}
        self._reserved: dict[str, int] = dict(self._counters)

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
            if self._marks is not None and last > self._reserved.get(key, 0):
                # Written down before any id under it is handed out.
                current, reserved = self._marks.reserve(key, current, size + CHUNK)
                if current >= MAX_ID:
                    raise exhausted(key)
                self._reserved[key] = reserved
                last = min(current + size, reserved)
            self._counters[key] = last
        return current + 1, last

    def ping(self) -> None:
        pass

    def close(self) -> None:
        with self._mutex:
            if self._marks is not None:
                self._marks.close()


def create(
    name: str, metadata: Mapping[str, str], app_id: str, *, state_file: str | None = None
) -> MemorySequencer:
    """``state_file``: where the ids' marks outlive this process (see above)."""
    marks = MarkLog(state_file) if state_file else None
    return MemorySequencer(parse_step(metadata, name), marks)
