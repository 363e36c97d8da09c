"""The supervisor's loop: one channel of events, one place that decides.

Signals, child exits, child messages, timers and control commands all
become events on one channel (signal handlers only enqueue). Each child's
life is the pure state machine in ``lifecycle``; this module carries out
its actions, keeps the table that ``layotto status`` and the actuator read,
and runs the two long operations, reload and scale (``operations``), one at
a time.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from layotto.boundary.addresses import worker_address
from layotto.boundary.config import ComponentConfig, Config
from layotto.boundary.control_link_trio import receive_messages, send_message
from layotto.boundary.specs import ApiSpec, WorkerSpec, ZygoteSpec
from layotto.supervisor import health, operations
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.children import Child
from layotto.supervisor.processes import Handle, Preforked, Zygote, launch

log = logging.getLogger("layotto.supervisor")

# Roles to exec instead of forking from the zygote ("api,worker"): for
# comparing the two in benchmarks and for ruling the zygote out when debugging.
_EXEC_ROLES = frozenset(filter(None, os.environ.get("LAYOTTO_EXEC_ROLES", "").split(",")))

# A worker that ignores SIGTERM this long is killed.
WORKER_STOP_GRACE = 5.0


def zygote_spec(config: Config, generation: int) -> ZygoteSpec:
    return ZygoteSpec(
        generation,
        config.runtime.log_level,
        # the backends to preload: those this generation's workers run
        tuple(sorted({(c.kind, c.type) for c in config.components})),
    )


def preforking() -> bool:
    """Whether generation 1's zygote is forked by the supervisor (see
    processes.prefork_zygote); ``LAYOTTO_EXEC_ROLES=zygote`` execs it."""
    return "zygote" not in _EXEC_ROLES


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
    generation: int = 1
    api_id: str = ""
    zygote_id: str = ""
    # component -> worker addresses the current API routes to
    routing: dict[str, list[str]] = field(default_factory=dict)
    last_reload: dict[str, Any] | None = None
    operation: str | None = None
    preforked: Preforked | None = None  # generation 1's zygote, forked already

    def __post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[Any, ...]](1000)
        self._stats_waiters: list[trio.MemorySendChannel[None]] = []
        self._last_stats: dict[str, dict[str, int]] = {}
        self._changed = trio.Event()
        self._worker_numbers: dict[str, itertools.count[int]] = {}
        self.stop_begun = trio.Event()
        self.zygote_id = self.new_zygote(1).id
        for component in self.config.components:
            self.routing[component.name] = [
                self.new_worker(component, 1).address for _ in range(component.workers)
            ]
        self.api_id = self.new_api(1, self.config, self.routing).id

    # -- building children ------------------------------------------------------

    def _app_callback(self) -> str | None:
        app = self.config.app
        return (
            f"{app.grpc_callback_host}:{app.grpc_callback_port}" if app.grpc_callback_port else None
        )

    def new_worker(
        self, component: ComponentConfig, generation: int, zygote_id: str | None = None
    ) -> Child:
        number = next(self._worker_numbers.setdefault(component.name, itertools.count()))
        address = worker_address(self.run_dir, component.name, number)
        spec = WorkerSpec(
            kind=component.kind,
            name=component.name,
            type=component.type,
            metadata=component.metadata,
            app_id=self.config.app.app_id,
            slot=number,
            address=address,
            log_level=self.config.runtime.log_level,
            hello=component.hello,
            bigger_than=component.bigger_than,
            app_callback=self._app_callback(),
            max_event_size=self.config.runtime.max_event_size,
        )
        child = Child(
            f"{component.name}#{number}",
            "worker",
            generation,
            spec,
            lc.Proc(self.config.runtime.start_timeout),
            component,
            address,
            forked_from=zygote_id or self.zygote_id,
        )
        self.children[child.id] = child
        return child

    def new_zygote(self, generation: int, config: Config | None = None) -> Child:
        config = config or self.config
        child = Child(
            f"zygote@{generation}",
            "zygote",
            generation,
            zygote_spec(config, generation),
            lc.Proc(config.runtime.start_timeout),
        )
        self.children[child.id] = child
        return child

    def new_api(
        self,
        generation: int,
        config: Config,
        routing: dict[str, list[str]],
        zygote_id: str | None = None,
    ) -> Child:
        spec = ApiSpec(config, self.run_dir, generation, routing)
        child = Child(
            f"api@{generation}",
            "api",
            generation,
            spec,
            lc.Proc(config.runtime.start_timeout),
            forked_from=zygote_id or self.zygote_id,
        )
        self.children[child.id] = child
        return child

    def start(self, child: Child) -> None:
        self.apply(child, lc.Start())

    def stop_child(
        self, child: Child, grace: float = WORKER_STOP_GRACE, signal_it: bool = True
    ) -> None:
        self.apply(child, lc.Stop(grace, signal_it))

    def forget(self, children: list[Child]) -> None:
        """Drop stopped children that no longer belong to the sidecar."""
        for child in children:
            if child.down and child.id != self.api_id:
                self.children.pop(child.id, None)

    @property
    def api(self) -> Child:
        return self.children[self.api_id]

    def workers_of(self, component: str) -> list[Child]:
        addresses = self.routing.get(component, [])
        return [c for c in self.children.values() if c.address in addresses]

    def route(self, component: str, addresses: list[str]) -> None:
        """Tell the current API which workers serve ``component``."""
        self.routing[component] = list(addresses)
        api = self.api
        assert isinstance(api.spec, ApiSpec)
        workers = {**api.spec.workers, component: tuple(addresses)}
        api.spec = dataclasses.replace(api.spec, workers=workers)  # also after an API restart
        self.tell(self.api, {"cmd": "workers", "component": component, "addresses": addresses})

    def tell(self, child: Child, message: dict[str, Any]) -> None:
        if child.launched is not None and child.up:
            self._start_task(self._send_line, child.launched, message)

    async def _send_line(self, launched: Handle, message: dict[str, Any]) -> None:
        try:
            await send_message(launched.control, message)
        except (OSError, trio.ClosedResourceError):
            log.warning("could not reach pid %d over its control link", launched.pid)

    def _start_task(self, function: Callable[..., Any], *args: Any) -> None:
        """Run a task in the supervisor's nursery; a bug in one task is logged,
        never allowed to take the supervisor (and every child) down."""

        async def guarded() -> None:
            try:
                await function(*args)
            except Exception:
                log.exception("supervisor task %s failed", getattr(function, "__name__", "?"))

        self._nursery.start_soon(guarded)

    # -- waiting (used by operations) ---------------------------------------------

    async def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Wait for a condition over the child table; False if the sidecar
        starts stopping first. Callers bound it with a cancel scope."""
        while not condition():
            if self.stopping:
                return False
            await self._changed.wait()
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- public API used by the control socket and the actuator ---------------

    async def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a control command through the loop; waits for its answer
        (callers bound the wait with a cancel scope)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        await self._send.send(("command", Command(name, args or {}, send)))
        return await receive.receive()

    # -- the loop ---------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped; returns once every child has exited."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_signals)
            for child in list(self.children.values()):
                self.start(child)
            task_status.started()
            async for event in self._receive:
                try:
                    self._handle(event)
                except Exception:  # one bad event must not orphan every child
                    log.exception("supervisor failed to handle %r", event[:2])
                if self.stopping and self._all_down():
                    break
            nursery.cancel_scope.cancel()
        log.info("all processes stopped")

    def _all_down(self) -> bool:
        return all(c.down for c in self.children.values())

    async def _watch_signals(self) -> None:
        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
        with trio.open_signal_receiver(*watched) as signals:
            async for signum in signals:
                await self._send.send(("signal", signum))

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "child":
            _, child_id, child_event = event
            child = self.children.get(child_id)
            if child is not None:
                self.apply(child, child_event)
        elif kind == "message":
            child = self.children.get(event[1])
            if child is not None:
                self._on_message(child, event[2])
        elif kind == "signal":
            self._on_signal(event[1])
        elif kind == "command":
            self._on_command(event[1])

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("received %s: stopping", name)
            self.begin_stop()
        elif signum == signal.SIGHUP:
            log.info("received SIGHUP: hot upgrade")
            self._run_operation("reload", operations.reload, None)
        else:
            step = 1 if signum == signal.SIGTTIN else -1
            log.info(
                "received %s: %s one worker per component",
                name,
                "adding" if step > 0 else "removing",
            )
            self._run_operation("scale", operations.scale_all, None, step)

    def apply(self, child: Child, event: lc.Event) -> None:
        before = child.proc.state
        child.proc, actions = lc.step(child.proc, event, time.monotonic())
        after = child.proc.state
        if before != after:
            self._log_transition(child, before, after)
        for action in actions:
            if isinstance(action, lc.Spawn):
                self._start_task(self._run_child, child)
            elif isinstance(action, lc.Kill):
                if child.launched is not None:
                    child.launched.signal(action.signal)
            elif isinstance(action, lc.SetTimer):
                self._start_task(self._timer, child.id, action.delay, action.token)
        if after in (lc.State.STOPPED, lc.State.FATAL, lc.State.BACKOFF):
            child.health = "UNKNOWN"
        self._notify()
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
        detail = f" ({child.reason()})" if after in (lc.State.BACKOFF, lc.State.FATAL) else ""
        log.log(level, "%s: %s -> %s%s", child.id, before.value, after.value, detail)

    async def _timer(self, child_id: str, delay: float, token: int) -> None:
        await trio.sleep(delay)
        await self._send.send(("child", child_id, lc.TimerFired(token)))

    async def _run_child(self, child: Child) -> None:
        child.fatal_reason = ""
        try:
            handle = await self._spawn(child)
        except (OSError, trio.TooSlowError) as exc:
            log.error("%s: cannot start: %s", child.id, exc)
            await self._send.send(("child", child.id, lc.Exited(127)))
            return
        child.launched = handle
        if child.role == "zygote":
            child.zygote = Zygote(handle.control)
        await self._send.send(("child", child.id, lc.Spawned(handle.pid)))
        status = -1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_messages, child.id, handle.control)
                status = await handle.wait()
                nursery.cancel_scope.cancel()
        finally:  # whatever happened, the state machine must hear of the exit
            handle.control.close()
            await self._send.send(("child", child.id, lc.Exited(status)))

    async def _spawn(self, child: Child) -> Handle:
        """Workers and the API process are forked by their zygote when it is
        up (they then share its imported modules); otherwise exec'd."""
        if child.role == "zygote" and child.generation == 1 and self.preforked is not None:
            handle, self.preforked = self.preforked, None  # its first start only
            return handle.adopt()
        if child.role in ("worker", "api") and child.role not in _EXEC_ROLES:
            zygote = self.children.get(child.forked_from) or self.children.get(self.zygote_id)
            if zygote is not None and zygote.proc.state == lc.State.STARTING:
                with trio.move_on_after(self.config.runtime.start_timeout):
                    await self.wait_until(lambda: zygote.proc.state != lc.State.STARTING)
            if zygote is not None and zygote.up and zygote.zygote is not None:
                try:
                    assert isinstance(child.spec, WorkerSpec | ApiSpec)
                    return await zygote.zygote.fork(child.id, child.spec)
                except (OSError, trio.TooSlowError) as exc:
                    log.warning(
                        "%s: the zygote could not fork it (%s); exec instead", child.id, exc
                    )
        return await launch(child.spec)

    async def _read_messages(self, child_id: str, sock: trio.socket.SocketType) -> None:
        """Until EOF; a reset link (a child killed with unread data) is an EOF too."""
        async for message in receive_messages(sock, f"control link of {child_id}"):
            await self._send.send(("message", child_id, message))

    def _on_message(self, child: Child, message: dict[str, Any]) -> None:
        event = message.get("event")
        if child.zygote is not None and event in ("forked", "exited"):
            child.zygote.on_message(message)
        elif event == "ready":
            if child.role != "worker":
                child.health = "UP"
            self.apply(child, lc.Ready())
        elif event == "health":
            status, reason = message["status"], message.get("reason", "")
            if (status, reason) != (child.health, child.health_reason):
                log.log(
                    logging.INFO if status == "UP" else logging.WARNING,
                    "%s: component %s%s",
                    child.id,
                    status,
                    f" ({reason})" if reason else "",
                )
            child.health, child.health_reason = status, reason
            self._notify()
        elif event == "fatal":
            child.fatal_reason = message.get("reason", "")
        elif event == "retired":
            # the API finished every call it had sent to this worker
            for worker in self.children.values():
                if worker.address == message.get("address") and not worker.down:
                    self.stop_child(worker)
        elif event == "stats":
            self._last_stats = message.get("requests", {})
            for waiter in self._stats_waiters:
                waiter.send_nowait(None)
            self._stats_waiters.clear()

    # -- commands ---------------------------------------------------------------

    def _on_command(self, command: Command) -> None:
        if command.name == "status":
            self._start_task(self._status, command)
        elif command.name == "stop":
            self.begin_stop()
            command.reply.send_nowait({"ok": True})
        elif command.name == "reload":
            self._run_operation("reload", operations.reload, command)
        elif command.name == "scale":
            self._run_operation(
                "scale",
                operations.scale,
                command,
                command.args.get("component"),
                command.args.get("workers"),
            )
        else:
            command.reply.send_nowait({"ok": False, "error": f"unknown command {command.name!r}"})

    def _run_operation(
        self, name: str, function: Callable[..., Any], command: Command | None, *args: Any
    ) -> None:
        """Run reload/scale as a task, one at a time (a conflicting one is refused)."""
        if self.stopping or self.operation is not None:
            error = f"cannot {name}: " + (
                "stopping" if self.stopping else f"a {self.operation} is under way; try again later"
            )
            log.warning("%s", error)
            if command is not None:
                command.reply.send_nowait({"ok": False, "error": error})
            return
        self.operation = name

        async def run() -> None:
            try:
                answer = await function(self, *args)
            except Exception as exc:  # a bug here must not take the supervisor down
                log.exception("%s failed", name)
                answer = {"ok": False, "error": f"{name} failed: {exc!r} (see the log)"}
            finally:
                self.operation = None
            if command is not None:
                command.reply.send_nowait(answer)

        self._start_task(run)

    async def _status(self, command: Command) -> None:
        api = self.api
        if api.up and api.launched is not None:
            send, receive = trio.open_memory_channel[None](1)
            self._stats_waiters.append(send)
            try:
                await send_message(api.launched.control, {"cmd": "stats"})
                with trio.move_on_after(1.0):
                    await receive.receive()
            except (OSError, trio.ClosedResourceError):
                pass
        now = time.monotonic()
        rows = []
        for child in self.children.values():
            requests = None
            if child.component is not None:
                requests = self._last_stats.get(child.component.name, {}).get(child.address)
            rows.append(child.row(now, requests))
        ready, _ = health.readiness(self)
        command.reply.send_nowait(
            {
                "ok": True,
                "ready": ready,
                "stopping": self.stopping,
                "config": self.config.source,
                "generation": self.generation,
                "operation": self.operation,
                "last_reload": self.last_reload,
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
        for child in list(self.children.values()):
            if child.role == "api":
                self.stop_child(child, self.config.runtime.shutdown_grace + 5.0)
        self._continue_stop()

    def _continue_stop(self) -> None:
        """Workers stop only once every API process is down, so calls can finish."""
        if any(c.role == "api" and not c.down for c in self.children.values()):
            return
        for child in list(self.children.values()):
            if child.role != "api" and not child.proc.stop_requested and not child.down:
                self.stop_child(child)
        # wake the loop so it re-checks whether everything is down
        self._send.send_nowait(("noop",))
