"""The supervisor's loop: one channel of events, one place that decides.

Signals, child exits, child messages, timers and control commands all
become typed events (``events``) on one channel (signal handlers only
enqueue). Each child's life is the pure state machine in ``lifecycle``;
the loop carries out its actions through a ``Launcher``, the only way to a
process (``child_runs`` holds the tasks that report back), updates the
table (``table``) that ``layotto status`` and the actuator read, runs the
two long operations, reload and scale (``operations``), one at a time, and
orders a stop: the API processes first, everything else once they are down.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

import trio

from layotto.boundary.config import Config
from layotto.boundary.control_link import Message
from layotto.supervisor import child_runs, operations
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.children import Child
from layotto.supervisor.events import (
    ChildLifecycle,
    ChildStarted,
    Command,
    LoopEvent,
    SignalReceived,
    Wake,
)
from layotto.supervisor.launcher import ChildProcess, Launcher
from layotto.supervisor.status import Stats, status_answer
from layotto.supervisor.table import ChildTable

log = logging.getLogger("layotto.supervisor")

# A worker that ignores SIGTERM this long is killed.
WORKER_STOP_GRACE = 5.0


class Arbiter(ChildTable):
    def __init__(self, config: Config, run_dir: str, launcher: Launcher) -> None:
        super().__init__(config, run_dir)
        self.launcher = launcher
        self.stopping = False
        self.operation: str | None = None  # the reload or scale under way
        self.stop_begun = trio.Event()
        self._send, self._receive = trio.open_memory_channel[LoopEvent](1000)
        # per API process: its last request counts, and how many answers came
        self._stats: dict[str, Stats] = {}
        self._stats_answers: dict[str, int] = {}
        # worker address -> the API processes that may still hold calls for it
        self._retiring: dict[str, set[str]] = {}
        self._started = 0.0
        self._ready_logged = False

    def route(self, component: str, addresses: list[str]) -> None:
        """Tell the serving API processes which workers serve ``component``.

        A worker taken out of the routing is stopped once every API process
        told has reported it ``retired`` (its calls there are done) or has
        exited (a restart starts with the new routing); at once if none runs."""
        before = self.routing.get(component, [])
        self.set_route(component, addresses)
        told = {api.id for api in self.apis if api.up}
        for api in self.apis:
            self.tell(api, {"cmd": "workers", "component": component, "addresses": addresses})
        for address in before:
            if address not in addresses:
                self._retiring[address] = set(told)
                self._release_worker(address, None)

    def _release_worker(self, address: str, api_id: str | None) -> None:
        """``api_id`` holds no call for worker ``address`` any more (None: just
        check); the worker stops when no API process does."""
        holders = self._retiring.get(address)
        if holders is None:
            return
        holders.discard(api_id or "")
        if holders:
            return
        del self._retiring[address]
        for worker in self.children.values():
            if worker.address == address and not worker.down:
                self.stop_child(worker)

    # -- waiting (used by operations) ---------------------------------------------

    async def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Wait for a condition over the child table; False if the sidecar
        starts stopping first. Callers bound it with a cancel scope."""
        while not condition():
            if self.stopping:
                return False
            await self._changed.wait()
        return True

    # -- acting on children ---------------------------------------------------------

    def start(self, child: Child) -> None:
        self.apply(child, lc.Start())

    def stop_child(
        self, child: Child, grace: float = WORKER_STOP_GRACE, signal_it: bool = True
    ) -> None:
        self.apply(child, lc.Stop(grace, signal_it))

    def tell(self, child: Child, message: Message) -> None:
        if child.process is not None and child.up:
            self._start_task(self._send_message, child.id, child.process, message)

    async def _send_message(self, child_id: str, process: ChildProcess, message: Message) -> None:
        try:
            await process.send(message)
        except (OSError, trio.ClosedResourceError):
            log.warning("could not reach %s (pid %d) over its control link", child_id, process.pid)

    def _start_task(self, function: Callable[..., Any], *args: Any) -> None:
        """Run a task in the supervisor's nursery; a bug in one task is logged,
        never allowed to take the supervisor (and every child) down."""

        async def guarded() -> None:
            try:
                await function(*args)
            except Exception:
                log.exception("supervisor task %s failed", getattr(function, "__name__", "?"))

        self._nursery.start_soon(guarded)

    # -- public API used by the control socket and the actuator ---------------

    async def command(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run a control command through the loop; waits for its answer
        (callers bound the wait with a cancel scope)."""
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        await self._send.send(Command(name, args or {}, send))
        return await receive.receive()

    # -- the loop ---------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped; returns once every child has exited."""
        self._started = trio.current_time()
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
                    log.exception("supervisor failed to handle %r", event)
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
                await self._send.send(SignalReceived(signum))

    def _handle(self, event: LoopEvent) -> None:
        if isinstance(event, SignalReceived):
            self._on_signal(event.signum)
        elif isinstance(event, Command):
            self._on_command(event)
        elif isinstance(event, Wake):
            pass
        elif (child := self.children.get(event.child_id)) is None:
            pass  # forgotten already
        elif isinstance(event, ChildStarted):
            child.process = event.process
            self.apply(child, lc.Spawned(event.process.pid))
        elif isinstance(event, ChildLifecycle):
            if isinstance(event.event, lc.Exited):
                child.process = None
                if child.role == "api":  # it holds no call any more
                    for address in list(self._retiring):
                        self._release_worker(address, child.id)
            self.apply(child, event.event)
        else:
            self._on_message(child, event.message)

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
        child.proc, actions = lc.step(child.proc, event, trio.current_time())
        after = child.proc.state
        if before != after:
            self._log_transition(child, before, after)
        for action in actions:
            if isinstance(action, lc.Spawn):
                self._spawn(child)
            elif isinstance(action, lc.Kill):
                if child.process is not None:
                    child.process.signal(action.signal)
            elif isinstance(action, lc.SetTimer):
                self._start_task(
                    child_runs.fire_timer, self._send, child.id, action.delay, action.token
                )
        if after in (lc.State.STOPPED, lc.State.FATAL, lc.State.BACKOFF):
            child.health = "UNKNOWN"
        self._notify()
        if self.stopping:
            self._continue_stop()
        elif not self._ready_logged and all(c.up for c in self.children.values()):
            self._ready_logged = True
            log.info(
                "layotto ready in %.2f s: %d processes",
                trio.current_time() - self._started,
                len(self.children),
            )

    def _log_transition(self, child: Child, before: lc.State, after: lc.State) -> None:
        level = logging.WARNING if after in (lc.State.BACKOFF, lc.State.FATAL) else logging.INFO
        detail = f" ({child.reason()})" if after in (lc.State.BACKOFF, lc.State.FATAL) else ""
        log.log(level, "%s: %s -> %s%s", child.id, before.value, after.value, detail)

    # -- the tasks that stand for a child or a timer --------------------------------

    def _spawn(self, child: Child) -> None:
        async def running_zygote() -> ChildProcess | None:
            """The zygote to fork ``child`` from, once it is no longer starting;
            None when it does not run (the launcher then execs)."""
            zygote = self.zygote_of(child)
            if zygote is None:
                return None
            if zygote.proc.state == lc.State.STARTING:
                with trio.move_on_after(self.config.runtime.start_timeout):
                    await self.wait_until(lambda: zygote.proc.state != lc.State.STARTING)
            return zygote.process if zygote.up else None

        child.fatal_reason = ""  # a new run reports its own
        self._start_task(
            child_runs.run_child, self.launcher, self._send, child.id, child.spec, running_zygote
        )

    def _on_message(self, child: Child, message: Message) -> None:
        event = message.get("event")
        if event == "ready":
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
            # this API process finished every call it had sent to this worker
            self._release_worker(str(message.get("address")), child.id)
        elif event == "stats":
            self._stats[child.id] = message.get("requests", {})
            self._stats_answers[child.id] = self._stats_answers.get(child.id, 0) + 1
            self._notify()

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
        stats = await self._api_stats()
        command.reply.send_nowait(status_answer(self, stats, trio.current_time()))

    async def _api_stats(self) -> Stats:
        """Request counts per worker, summed over the serving API processes;
        the last known ones of a process that does not answer within a second."""
        apis = [api for api in self.apis if api.up and api.process is not None]
        asked = {api.id: self._stats_answers.get(api.id, 0) for api in apis}
        for api in apis:
            self.tell(api, {"cmd": "stats"})
        with trio.move_on_after(1.0):
            await self.wait_until(
                lambda: all(self._stats_answers.get(i, 0) > n for i, n in asked.items())
            )
        for gone in [i for i in self._stats if i not in self.children]:
            del self._stats[gone], self._stats_answers[gone]
        total: Stats = {}
        for api_id in self.api_ids:
            for component, counts in self._stats.get(api_id, {}).items():
                summed = total.setdefault(component, {})
                for address, count in counts.items():
                    summed[address] = summed.get(address, 0) + count
        return total

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
        self._send.send_nowait(Wake())
