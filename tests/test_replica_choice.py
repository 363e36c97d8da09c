"""How the API picks a replica of a component for a non-sticky call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

from layotto.api.nng_client import WorkerPool


@dataclass
class FakeSlot:
    name: str
    can_lead: bool = True


def pool() -> WorkerPool:
    return WorkerPool("state_demo", [])  # no replica: no socket is made


def picks(p: WorkerPool, slots: list[FakeSlot], calls: int) -> list[str]:
    live = cast(list[Any], slots)
    return [p._spread(live).name for _ in range(calls)]


def test_idle_replicas_take_turns_in_bursts() -> None:
    slots = [FakeSlot("a"), FakeSlot("b"), FakeSlot("c")]
    chosen = picks(pool(), slots, 3 * WorkerPool.BURST)
    burst = WorkerPool.BURST
    assert chosen == ["a"] * burst + ["b"] * burst + ["c"] * burst


def test_every_replica_serves_over_time() -> None:
    slots = [FakeSlot(n) for n in "abcd"]
    counts = Counter(picks(pool(), slots, 8 * WorkerPool.BURST))
    assert counts == {n: 2 * WorkerPool.BURST for n in "abcd"}


def test_a_busy_replica_passes_the_call_to_the_next_free_one() -> None:
    slots = [FakeSlot("a", can_lead=False), FakeSlot("b", can_lead=False), FakeSlot("c")]
    assert picks(pool(), slots, 3) == ["c", "c", "c"]


def test_when_all_are_busy_the_call_queues_on_the_current_one() -> None:
    slots = [FakeSlot("a", can_lead=False), FakeSlot("b", can_lead=False)]
    p = pool()
    assert set(picks(p, slots, WorkerPool.BURST)) == {"a"}
    assert set(picks(p, slots, WorkerPool.BURST)) == {"b"}
