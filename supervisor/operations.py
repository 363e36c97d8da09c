"""The supervisor's long operations: hot upgrade (reload) and scaling.

Both run as one task at a time (the arbiter refuses a second) and return
the answer the control command gets. Neither closes a listening socket and
neither fails a call: new processes are ready before traffic moves to them,
and old ones stop only once nothing is routed to them any more.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from layotto.boundary import config as config_module
from layotto.boundary.config import Config, ConfigError
from layotto.components.registry import TYPES
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.plan import ReloadPlan, ReloadRefusedError, plan_reload, with_fresh_start

if TYPE_CHECKING:
    from layotto.supervisor.arbiter import Arbiter
    from layotto.supervisor.children import Child

log = logging.getLogger("layotto.supervisor")


def _failed(arbiter: Arbiter, started: float, error: str) -> dict[str, Any]:
    log.error("reload failed, generation %d keeps serving: %s", arbiter.generation, error)
    arbiter.record_reload(
        {"ok": False, "error": error, "at": time.time(), "generation": arbiter.generation}
    )
    return {
        "ok": False,
        "error": error,
        "generation": arbiter.generation,
        "seconds": round(trio.current_time() - started, 3),
    }


def _serving(child: Child) -> bool:
    """Up, and for a worker: it has reached its backend (health UP) once."""
    return child.up and (child.role != "worker" or child.health == "UP")


async def _start_all(
    arbiter: Arbiter, children: list[Child], limit: float, *, reach_backends: bool = False
) -> str | None:
    """Start children and wait until all run (with ``reach_backends``: and
    each worker has reached its backend once); the reason when they do not."""
    ready = _serving if reach_backends else (lambda c: c.up)
    for child in children:
        arbiter.start(child)
    with trio.move_on_after(limit):
        await arbiter.wait_until(
            lambda: (
                all(ready(c) for c in children)
                or any(c.proc.state == lc.State.FATAL for c in children)
            )
        )
    failed = [c for c in children if not ready(c)]
    if not failed:
        return None
    if arbiter.stopping:
        return "the sidecar is stopping"
    return f"{'; '.join(_why_not(c) for c in failed)} (start limit {limit:g} s)"


def _why_not(child: Child) -> str:
    if child.up:  # a worker whose backend never answered
        reason = child.health_reason or "no health report yet"
        return f"{child.id} cannot reach its backend ({reason})"
    return f"{child.id} {child.proc.state.value}" + (
        f" ({child.reason()})" if child.reason() else ""
    )


async def _stop_all(arbiter: Arbiter, children: list[Child]) -> None:
    for child in children:
        arbiter.stop_child(child)
    with trio.move_on_after(30):
        await arbiter.wait_until(lambda: all(c.down for c in children))
    arbiter.forget([c for c in children if c.down])


async def reload(arbiter: Arbiter) -> dict[str, Any]:
    """Re-read the config and replace every process without failing a call.

    Order: validate everything; start the new zygote and workers, then the
    new API processes, and wait for each to be ready; only then tell every
    old API process to drain (new connections are steered to the new ones,
    and each stops once its clients have moved, via connection-age GOAWAY);
    then stop the old workers, then the old zygote, and steer new
    connections back to the group's first member ("ret 0"). Any failure
    before the switch tears the new generation down and leaves the old one
    serving.
    """
    started = trio.current_time()
    old_config = arbiter.config
    try:
        new_config = config_module.load(old_config.source)
        plan = plan_reload(old_config, new_config)
    except (ConfigError, ReloadRefusedError) as exc:
        return _failed(arbiter, started, str(exc))
    dead = [n for n in plan.keep if not any(not w.down for w in arbiter.workers_of(n))]
    for name in dead:
        log.warning("reload: component %s has no live worker; it gets a fresh start", name)
    plan = with_fresh_start(plan, new_config, dead)
    generation = arbiter.generation + 1
    log.info("reload: starting generation %d", generation)
    for name in plan.lost_data:
        log.warning("reload: in-memory component %s changed; it restarts empty", name)
    for name in plan.removed:
        log.info("reload: component %s is gone from the config; its workers stop", name)

    problem, new, routing = await _start_generation(arbiter, generation, new_config, plan)
    if problem is not None:  # roll back: the old generation never stopped serving
        await _stop_all(arbiter, new)
        return _failed(arbiter, started, f"generation {generation} did not start: {problem}")
    zygote, new_apis = new[0], [c for c in new if c.role == "api"]

    old_apis = arbiter.apis
    await _wait_settled(arbiter, old_apis, old_config.runtime.start_timeout)
    # From here to the drain orders there is no checkpoint: the table stays as read.
    old_zygote = arbiter.children.get(arbiter.zygote_id)
    # FATAL ones too: replaced, they must leave the table (liveness reads it).
    old_workers = [w for name in plan.retire for w in arbiter.workers_of(name)]
    old_workers += arbiter.unrouted_workers(before=generation)
    # The old API processes joined the reuseport group first, so they sit
    # below index len(old_apis) and the new ones start there (api/reuseport.py).
    steer_to = len(old_apis)
    arbiter.switch_generation(generation, new_config, apis=new_apis, zygote=zygote, routing=routing)
    arbiter.set_steering(new_apis, steer_to)  # a new one restarting now keeps the steering
    await _retire_apis(arbiter, old_apis, old_config, steer_to)
    await _stop_all(arbiter, old_workers)
    if old_zygote is not None:  # after its workers, so they are not orphaned
        await _stop_all(arbiter, [old_zygote])
    # Only new members are left: back to "member 0 serves, the others stand by".
    arbiter.set_steering(new_apis, 0)
    for api in new_apis:
        arbiter.tell(api, {"cmd": "steer", "to": 0})
    seconds = round(trio.current_time() - started, 3)
    log.info("reload: generation %d serving (%.2f s)", generation, seconds)
    arbiter.record_reload(
        {"ok": True, "at": time.time(), "generation": generation, "seconds": seconds}
    )
    return {"ok": True, "generation": generation, "seconds": seconds}


async def _start_generation(
    arbiter: Arbiter, generation: int, config: Config, plan: ReloadPlan
) -> tuple[str | None, list[Child], dict[str, list[str]]]:
    """Start ``plan``'s new processes: the zygote and workers, then (once they
    run) the API processes. Returns why they did not all start (None: they
    did), every child started (zygote first, APIs last) and the new APIs'
    routing: the kept components' workers and the new ones."""
    timeout = config.runtime.start_timeout
    zygote = arbiter.new_zygote(generation, config)  # imports the code as it is on disk now
    workers = [
        arbiter.new_worker(component, generation, zygote.id)
        for component in plan.start
        for _ in range(component.workers)
    ]
    started = [zygote, *workers]
    routing = {name: list(arbiter.routing[name]) for name in plan.keep}
    for worker in workers:
        assert worker.component is not None
        routing.setdefault(worker.component.name, []).append(worker.address)
    # A generation whose workers cannot reach their backends would go live
    # and fail every call: it must not take traffic (rolled back instead).
    problem = await _start_all(arbiter, started, timeout, reach_backends=True)
    if problem is not None:
        return problem, started, routing
    apis = [
        arbiter.new_api(generation, n, config, routing, zygote.id)
        for n in range(config.runtime.api_processes)
    ]
    started += apis
    return await _start_all(arbiter, apis, timeout), started, routing


async def _wait_settled(arbiter: Arbiter, apis: list[Child], limit: float) -> None:
    """Until none of ``apis`` is starting (bounded by ``limit``): one that
    starts would attach "ret 0" once it listens, undoing the switch's steering."""
    with trio.move_on_after(limit):
        await arbiter.wait_until(lambda: all(a.proc.state != lc.State.STARTING for a in apis))


async def _retire_apis(
    arbiter: Arbiter, old_apis: list[Child], old_config: Config, steer_to: int
) -> None:
    """Tell every previous API process to steer new connections to group
    member ``steer_to`` (the first new one), drain its clients and exit;
    none is restarted. Returns once all are down."""
    runtime = old_config.runtime
    drain_cap = 1.1 * runtime.max_connection_age + 2 * runtime.shutdown_grace + 10
    for api in old_apis:
        if api.up:
            arbiter.tell(api, {"cmd": "drain", "steer_to": steer_to})
            arbiter.stop_child(api, drain_cap, signal_it=False)
        else:
            arbiter.stop_child(api)
    await arbiter.wait_until(lambda: all(a.down for a in old_apis))  # bounded by their timers
    arbiter.forget(old_apis)


async def scale(arbiter: Arbiter, name: Any, count: Any) -> dict[str, Any]:
    """Run ``count`` workers of component ``name``; retired ones drain first."""
    component = arbiter.config.component(str(name))
    if component is None:
        known = ", ".join(c.name for c in arbiter.config.components)
        return {"ok": False, "error": f"no component {name!r} (components: {known})"}
    if not isinstance(count, int) or count < 1:
        return {"ok": False, "error": f"worker count must be an integer >= 1, got {count!r}"}
    if count > 1 and TYPES[(component.kind, component.type)].single_process:
        return {
            "ok": False,
            "error": f"{component.name} is {component.type}: its data lives "
            f"in one process, so it runs exactly 1 worker",
        }
    current = arbiter.workers_of(component.name)
    if count > len(current):
        added = [
            arbiter.new_worker(component, arbiter.generation) for _ in range(count - len(current))
        ]
        arbiter.route(component.name, [w.address for w in current + added])
        problem = await _start_all(arbiter, added, arbiter.config.runtime.start_timeout)
        if problem is not None:
            arbiter.route(component.name, [w.address for w in current])
            await _stop_all(arbiter, added)
            return {"ok": False, "error": f"new workers did not start: {problem}"}
    elif count < len(current):
        keep, retired = current[:count], current[count:]
        # each stops once every API process has reported it "retired" (its
        # calls there are done) or exited; at once if no API process runs
        arbiter.route(component.name, [w.address for w in keep])
        with trio.move_on_after(120):
            await arbiter.wait_until(lambda: all(w.down for w in retired))
        arbiter.forget([w for w in retired if w.down])
    log.info("scale: %s runs %d worker(s)", component.name, count)
    return {"ok": True, "component": component.name, "workers": count}


async def scale_all(arbiter: Arbiter, step: int) -> dict[str, Any]:
    """SIGTTIN/SIGTTOU: one worker more or less for every component that can."""
    results = []
    for component in arbiter.config.components:
        if TYPES[(component.kind, component.type)].single_process:
            continue
        count = len(arbiter.workers_of(component.name)) + step
        if count >= 1:
            results.append(await scale(arbiter, component.name, count))
    return {"ok": all(r["ok"] for r in results), "results": results}
