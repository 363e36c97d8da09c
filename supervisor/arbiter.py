"""The supervisor's loop: one channel of events, one place that decides.

Signals, child exits, child messages, timers and control commands all
become events on one channel (signal handlers only enqueue). Each child's
life is the pure state machine in ``lifecycle``; this module only carries
out its actions and keeps the table that ``layotto status`` and the
actuator read.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import trio

from layotto.supervisor import lifecycle as lc
from layotto.supervisor.config import ComponentConfig, Config
from layotto.supervisor.processes import Launched, exit_status, launch
from layotto.workers.protocol import worker_address

log = logging.getLogger("layotto.supervisor")

API = "api"
# A worker that ignores SIGTERM this long after its grace is killed.
WORKER_STOP_GRACE = 5.0


@dataclass
class Child:
    id: str
    role: str  # "api" | "worker"
    module: str
    spec: dict[str, Any]
    proc: lc.Proc
    component: ComponentConfig | None = None
    slot: int = 0
    launched: Launched | None = None
    health: str = "UNKNOWN"
    health_reason: str = ""
    fatal_reason: str = ""

    @property
    def up(self) -> bool:
        return self.proc.state == lc.State.RUNNING

    def row(self, now: float, requests: int | None) -> dict[str, Any]:
        uptime = now - self.proc.ready_at if self.proc.ready_at is not None else None
        return {
            "name": self.id,
            "role": self.role
            if self.component is None
            else f"{self.component.kind}/{self.component.type}",
            "component": self.component.name if self.component else "",
            "pid": self.proc.pid,
            "state": self.proc.state.value,
            "restarts": self.proc.restarts,
            "uptime": uptime,
            "health": self.health,
            "requests": requests,
            "reason": self.fatal_reason or self.proc.reason or self.health_reason,
        }


@dataclass
class Command:
    name: str
    args: dict[str, Any]
    reply: trio.MemorySendChannel[dict[str, Any]]


@dataclass
class Arbiter:
    config: Config
    run_dir: str
    started: float = field(default_factory=time.monotonic)
    children: dict[str, Child] = field(default_factory=dict)
    stopping: bool = False
    ready_logged: bool = False

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[Any, ...]](1000)
        self._stats_waiters: list[trio.MemorySendChannel[dict[str, Any]]] = []
        self._last_stats: dict[str, list[int]] = {}
        self.stop_begun = trio.Event()
        timeout = self.config.runtime.start_timeout
        for component in self.config.components:
            for slot in range(component.workers):
                child_id = f"{component.name}#{slot}"
                self.children[child_id] = Child(
                    child_id,
                    "worker",
                    "layotto.workers.main",
                    self._worker_spec(component, slot),
                    lc.Proc(timeout),
                    component,
                    slot,
                )
        self.children[API] = Child(
            API,
            "api",
            "layotto.api.main",
            {
                "config": self.config.to_json(),
                "run_dir": self.run_dir,
                "log_level": self.config.runtime.log_level,
            },
            lc.Proc(timeout),
        )

    def _worker_spec(self, component: ComponentConfig, slot: int) -> dict[str, Any]:
        return {
            "kind": component.kind,
            "name": component.name,
            "type": component.type,
            "metadata": dict(component.metadata),
            "app_id": self.config.app.app_id,
            "hello": component.hello,
            "bigger_than": dict(component.bigger_than),
            "slot": slot,
            "address": worker_address(self.run_dir, component.name, slot),
            "log_level": self.config.runtime.log_level,
        }

    # -- public API used by the control socket and the actuator ---------------

    async def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        await self._send.send(("command", Command(name, args or {}, send)))
        with trio.move_on_after(10):
            return await receive.receive()
        return {"ok": False, "error": f"the supervisor did not answer {name!r} in time"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """UP only when the API and every component have a running, healthy worker."""
        components: dict[str, Any] = {}
        api = self.children[API]
        components["api"] = {
            "status": "UP" if api.up else "DOWN",
            "details": {
                "state": api.proc.state.value,
                "pid": api.proc.pid,
                "reason": api.fatal_reason or api.proc.reason,
            },
        }
        for component in self.config.components:
            workers = [
                c
                for c in self.children.values()
                if c.component is not None and c.component.name == component.name
            ]
            healthy = [w for w in workers if w.up and w.health == "UP"]
            reasons = sorted(
                {
                    w.health_reason or w.fatal_reason or w.proc.reason
                    for w in workers
                    if w not in healthy
                }
                - {""}
            )
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
                    "status": "UP" if w.up and w.health == "UP" else "DOWN",
                    "details": {
                        "pid": w.proc.pid,
                        "state": w.proc.state.value,
                        "restarts": w.proc.restarts,
                        **(
                            {"reason": w.health_reason or w.fatal_reason or w.proc.reason}
                            if not (w.up and w.health == "UP")
                            else {}
                        ),
                    },
                }
        ok = not self.stopping and all(
            v["status"] == "UP" for k, v in components.items() if "#" not in k
        )
        return ok, components

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """DOWN only for what cannot heal by itself: a FATAL child or shutdown."""
        components = {
            c.id: {
                "status": "DOWN" if c.proc.state == lc.State.FATAL else "UP",
                "details": {
                    "state": c.proc.state.value,
                    **(
                        {"reason": c.fatal_reason or c.proc.reason}
                        if c.proc.state == lc.State.FATAL
                        else {}
                    ),
                },
            }
            for c in self.children.values()
        }
        ok = not self.stopping and all(v["status"] == "UP" for v in components.values())
        return ok, components

    # -- the loop ---------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped; returns once every child has exited."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_signals)
            for child in self.children.values():
                self._apply(child, lc.Start())
            task_status.started()
            async for event in self._receive:
                self._handle(event)
                if self.stopping and self._all_down():
                    break
            nursery.cancel_scope.cancel()
        log.info("all processes stopped")

    def _all_down(self) -> bool:
        return all(
            c.proc.state in (lc.State.STOPPED, lc.State.FATAL) for c in self.children.values()
        )

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                await self._send.send(("signal", signum))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "child":
            _, child_id, child_event = event
            child = self.children.get(child_id)
            if child is not None:
                self._apply(child, child_event)
        elif kind == "message":
            self._on_message(self.children[event[1]], event[2])
        elif kind == "signal":
            if event[1] == signal.SIGHUP:
                # Caught so it cannot kill the supervisor; the hot upgrade it
                # will trigger is not built yet.
                log.warning("received SIGHUP: hot upgrade is not implemented yet; ignored")
                return
            log.info("received %s: stopping", signal.Signals(event[1]).name)
            self.begin_stop()
        elif kind == "command":
            self._on_command(event[1])

    def _apply(self, child: Child, event: lc.Event) -> None:
        before = child.proc.state
        child.proc, actions = lc.step(child.proc, event, time.monotonic())
        after = child.proc.state
        if before != after:
            self._log_transition(child, before, after)
        for action in actions:
            if isinstance(action, lc.Spawn):
                self._nursery.start_soon(self._run_child, child)
            elif isinstance(action, lc.Kill):
                if child.launched is not None and child.launched.process.returncode is None:
                    child.launched.process.send_signal(action.signal)
            elif isinstance(action, lc.SetTimer):
                self._nursery.start_soon(self._timer, child.id, action.delay, action.token)
        if after in (lc.State.STOPPED, lc.State.FATAL, lc.State.BACKOFF):
            child.health = "UNKNOWN"
        if self.stopping:
            self._continue_stop()
        elif not self.ready_logged and all(c.up for c in self.children.values()):
            self.ready_logged = True
            log.info(
                "layotto ready in %.2f s: %d processes",
                time.monotonic() - self.started,
                len(self.children),
            )

    def _log_transition(self, child: Child, before: lc.State, after: lc.State) -> None:
        level = logging.WARNING if after in (lc.State.BACKOFF, lc.State.FATAL) else logging.INFO
        detail = (
            f" ({child.fatal_reason or child.proc.reason})"
            if after in (lc.State.BACKOFF, lc.State.FATAL)
            else ""
        )
        log.log(level, "%s: %s -> %s%s", child.id, before.value, after.value, detail)

    async def _timer(self, child_id: str, delay: float, token: int) -> None:
        await trio.sleep(delay)
        await self._send.send(("child", child_id, lc.TimerFired(token)))

    async def _run_child(self, child: Child) -> None:
        child.fatal_reason = ""
        try:
            launched = await launch(child.module, child.spec)
        except OSError as exc:
            log.error("%s: cannot start: %s", child.id, exc)
            await self._send.send(("child", child.id, lc.Exited(127)))
            return
        child.launched = launched
        await self._send.send(("child", child.id, lc.Spawned(launched.pid)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_messages, child.id, launched.control)
            await launched.process.wait()
            nursery.cancel_scope.cancel()
        launched.control.close()
        await self._send.send(("child", child.id, lc.Exited(exit_status(launched.process))))

    async def _read_messages(self, child_id: str, sock: trio.socket.SocketType) -> None:
        buffer = b""
        while True:
            chunk = await sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("%s sent a bad control line %r", child_id, line[:200])
                    continue
                await self._send.send(("message", child_id, message))

    def _on_message(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ready":
            self._apply(child, lc.Ready())
            if child.role == "api":
                child.health = "UP"
        elif event == "health":
            if (message["status"], message.get("reason", "")) != (
                child.health,
                child.health_reason,
            ):
                log.log(
                    logging.INFO if message["status"] == "UP" else logging.WARNING,
                    "%s: component %s%s",
                    child.id,
                    message["status"],
                    f" ({message['reason']})" if message.get("reason") else "",
                )
            child.health = message["status"]
            child.health_reason = message.get("reason", "")
        elif event == "fatal":
            child.fatal_reason = message.get("reason", "")
        elif event == "stats":
            self._last_stats = message.get("requests", {})
            for waiter in self._stats_waiters:
                waiter.send_nowait({})
            self._stats_waiters.clear()

    # -- commands ---------------------------------------------------------------

    def _on_command(self, command: Command) -> None:
        if command.name == "status":
            self._nursery.start_soon(self._status, command)
        elif command.name == "stop":
            self.begin_stop()
            command.reply.send_nowait({"ok": True})
        else:
            command.reply.send_nowait({"ok": False, "error": f"unknown command {command.name!r}"})

    async def _status(self, command: Command) -> None:
        api = self.children[API]
        if api.up and api.launched is not None:
            send, receive = trio.open_memory_channel[dict[str, Any]](1)
            self._stats_waiters.append(send)
            try:
                await api.launched.control.send(b'{"cmd":"stats"}\n')
                with trio.move_on_after(1.0):
                    await receive.receive()
            except OSError:
                pass
        now = time.monotonic()
        rows = []
        for child in self.children.values():
            requests = None
            if child.component is not None:
                counts = self._last_stats.get(child.component.name, [])
                requests = counts[child.slot] if child.slot < len(counts) else None
            rows.append(child.row(now, requests))
        ready, _ = self.readiness()
        command.reply.send_nowait(
            {
                "ok": True,
                "ready": ready,
                "stopping": self.stopping,
                "config": self.config.source,
                "processes": rows,
            }
        )

    # -- stopping ---------------------------------------------------------------

    def begin_stop(self) -> None:
        """Stop accepting, let the API finish in-flight calls, then stop workers."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_begun.set()
        self._apply(self.children[API], lc.Stop(self.config.runtime.shutdown_grace + 5.0))
        self._continue_stop()

    def _continue_stop(self) -> None:
        """Workers stop only once the API is down, so in-flight calls can finish."""
        if self.children[API].proc.state not in (lc.State.STOPPED, lc.State.FATAL):
            return
        for child in self.children.values():
            if (
                child.role == "worker"
                and not child.proc.stop_requested
                and child.proc.state not in (lc.State.STOPPED, lc.State.FATAL)
            ):
                self._apply(child, lc.Stop(WORKER_STOP_GRACE))
        # wake the loop so it re-checks whether everything is down
        self._send.send_nowait(("noop",))
