"""Readiness and liveness, as the actuator reports them, from the supervisor's table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layotto.supervisor import lifecycle as lc

if TYPE_CHECKING:
    from layotto.supervisor.arbiter import Arbiter


def readiness(arbiter: Arbiter) -> tuple[bool, dict[str, Any]]:
    """UP only when an API process and every component have a running, healthy worker.

    The "api" indicator is UP while at least one of the serving generation's
    API processes runs: they share the gRPC port, so one serves while a dead
    one restarts (each has its own indicator, ``api@<generation>#<n>``)."""
    components: dict[str, Any] = {}
    apis = arbiter.apis
    running = [api for api in apis if api.up]
    # A running API may have a reason too: saturation (its streams at their limit).
    reasons = sorted({api.reason() for api in apis} - {""})
    components["api"] = {
        "status": "UP" if running else "DOWN",
        "details": {
            "generation": arbiter.generation,
            "running": len(running),
            "processes": len(apis),
            **({"reason": "; ".join(reasons)} if reasons else {}),
        },
    }
    for api in apis:
        components[api.id] = {
            "status": "UP" if api.up else "DOWN",
            "details": {
                "state": api.proc.state.value,
                "pid": api.proc.pid,
                "restarts": api.proc.restarts,
                **({"reason": api.reason()} if api.reason() else {}),
            },
        }
    for component in arbiter.config.components:
        workers = arbiter.workers_of(component.name)
        healthy = [w for w in workers if w.healthy]
        reasons = sorted({w.reason() for w in workers if not w.healthy} - {""})
        components[component.name] = {
            "status": "UP" if healthy else "DOWN",
            "details": {
                "kind": component.kind,
                "type": component.type,
                "ready_workers": len(healthy),
                "workers": len(workers),
                **({"reason": "; ".join(reasons)} if reasons else {}),
            },
        }
        for w in workers:
            components[w.id] = {
                "status": "UP" if w.healthy else "DOWN",
                "details": {
                    "pid": w.proc.pid,
                    "state": w.proc.state.value,
                    "restarts": w.proc.restarts,
                    **({"reason": w.reason()} if not w.healthy else {}),
                },
            }
    if arbiter.last_reload is not None and not arbiter.last_reload["ok"]:
        components["last_reload"] = {"status": "UP", "details": arbiter.last_reload}
    ok = not arbiter.stopping and all(
        v["status"] == "UP" for k, v in components.items() if "#" not in k
    )
    return ok, components


def liveness(arbiter: Arbiter) -> tuple[bool, dict[str, Any]]:
    """DOWN only for what cannot heal by itself: a FATAL child or shutdown."""
    components = {
        c.id: {
            "status": "DOWN" if c.proc.state == lc.State.FATAL else "UP",
            "details": {
                "state": c.proc.state.value,
                **({"reason": c.reason()} if c.proc.state == lc.State.FATAL else {}),
            },
        }
        for c in arbiter.children.values()
    }
    ok = not arbiter.stopping and all(v["status"] == "UP" for v in components.values())
    return ok, components
