"""Redis sequencer (Layotto's ``redis`` sequencer).

STRONG ids are ``INCR``; a WEAK segment is ``INCRBY key size`` → [v-size+1, v].
``biggerThan`` floors are raised with a Lua script so a concurrent INCR cannot
slip between the read and the write.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from layotto.components import _redis
from layotto.components.sequencer.base import MAX_ID, check_size, exhausted
from layotto.components.sequencer.segments import parse_step

_RAISE_FLOOR = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if current < floor then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
"""


class RedisSequencer:
    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self.segment_step = parse_step(metadata, component)
        self._client = _redis.connect(metadata, component)
        self._address = metadata["redisHost"]
        self._probe = _redis.Probe(self._client, self._address)
        self._raise_floor = self._client.register_script(_RAISE_FLOOR)

    def ensure_bigger_than(self, floors: Mapping[str, int]) -> None:
        with _redis.translated(self._address):
            for key, floor in floors.items():
                # A floor ≤ 0 changes nothing: ids start at 1 anyway.
                if floor > 0:
                    self._raise_floor(keys=[key], args=[floor])

    def next_id(self, key: str) -> int:
        return self.next_segment(key, 1)[1]

    def next_segment(self, key: str, size: int) -> tuple[int, int]:
        check_size(size)
        with _redis.translated(self._address):
            # INCRBY refuses to overflow int64 and leaves the key alone; near
            # the limit, reserve only what is left (Lua numbers are doubles,
            # too coarse for this arithmetic, so it happens here).
            while True:  # each failed round means other callers took ids: it ends
                try:
                    last = int(self._client.incrby(key, size))
                    return last - size + 1, last
                except redis.ResponseError as exc:
                    if "overflow" not in str(exc):
                        raise
                left = MAX_ID - int(self._client.get(key) or 0)
                if left <= 0:
                    raise exhausted(key)
                size = min(size, left)

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        self._client.close()
        self._probe.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisSequencer:
    return RedisSequencer(metadata, name)
