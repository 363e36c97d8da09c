"""What ``layotto status`` answers, assembled from the supervisor's table.

Pure: the arbiter asks the API process for its request counts first and
passes them in, with the time to measure uptimes against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layotto.supervisor import health

if TYPE_CHECKING:
    from layotto.supervisor.arbiter import Arbiter

# component -> worker address -> requests served, as the API process counts them
Stats = dict[str, dict[str, int]]


def status_answer(arbiter: Arbiter, stats: Stats, now: float) -> dict[str, Any]:
    rows = []
    for child in arbiter.children.values():
        requests = None
        if child.component is not None:
            requests = stats.get(child.component.name, {}).get(child.address)
        rows.append(child.row(now, requests))
    ready, _ = health.readiness(arbiter)
    return {
        "ok": True,
        "ready": ready,
        "stopping": arbiter.stopping,
        "config": arbiter.config.source,
        "generation": arbiter.generation,
        "operation": arbiter.operation,
        "last_reload": arbiter.last_reload,
        "processes": rows,
    }
