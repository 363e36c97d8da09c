"""The life of one child process, decided purely: (state, event, now) -> actions.

Named after Supervisor's process states. The arbiter turns the actions into
spawns, signals and timers; nothing here touches the OS, so every rule
(restart back-off, crash-loop detection, stop escalation) is tested without
processes.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field, replace
from enum import Enum

from layotto.boundary.exits import EXIT_CONFIG

# A child that exits this often within the window is crash-looping: it is
# marked FATAL and reported instead of being restarted again.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW = 60.0
# First restart is immediate (a killed worker should be back within a
# second); later ones back off exponentially up to the cap.
BACKOFF_FIRST = 0.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 5.0


class State(Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    FATAL = "FATAL"


# Events -------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Spawned:
    pid: int


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class Exited:
    status: int  # exit code, or -signal number


@dataclass(frozen=True)
class TimerFired:
    token: int


@dataclass(frozen=True)
class Stop:
    grace: float
    # False when the child was already asked to finish by other means (an API
    # process draining for a hot upgrade): only the escalation timer is set.
    signal: bool = True


Event = Start | Spawned | Ready | Exited | TimerFired | Stop

# Actions ------------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    pass


@dataclass(frozen=True)
class Kill:
    signal: int


@dataclass(frozen=True)
class SetTimer:
    delay: float
    token: int


Action = Spawn | Kill | SetTimer


@dataclass(frozen=True)
class Proc:
    start_timeout: float
    state: State = State.STOPPED
    pid: int | None = None
    started_at: float | None = None
    ready_at: float | None = None
    restarts: int = 0
    recent_exits: tuple[float, ...] = ()
    last_exit: int | None = None
    reason: str = ""
    timer: int = 0  # token of the one timer that may still matter
    stop_requested: bool = field(default=False)


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def _timer(proc: Proc, delay: float) -> tuple[Proc, SetTimer]:
    token = proc.timer + 1
    return replace(proc, timer=token), SetTimer(delay, token)


def step(proc: Proc, event: Event, now: float) -> tuple[Proc, list[Action]]:
    """Apply one event; returns the new state and what to do about it."""
    state = proc.state
    if isinstance(event, Start):
        if state in (State.STOPPED, State.FATAL):
            proc, timer = _timer(
                replace(
                    proc,
                    state=State.STARTING,
                    reason="",
                    started_at=now,
                    stop_requested=False,
                    recent_exits=(),
                ),
                proc.start_timeout,
            )
            return proc, [Spawn(), timer]
        return proc, []

    if isinstance(event, Spawned):
        if state in (State.STOPPED, State.FATAL):
            # stopped while its exec was still under way
            return replace(proc, pid=event.pid), [Kill(signal.SIGTERM)]
        return replace(proc, pid=event.pid, started_at=now), []

    if isinstance(event, Ready):
        if state == State.STARTING:
            return replace(
                proc, state=State.RUNNING, ready_at=now, reason="", timer=proc.timer + 1
            ), []
        return proc, []

    if isinstance(event, Stop):
        if state in (State.STARTING, State.RUNNING) and proc.pid is not None:
            proc, timer = _timer(
                replace(proc, state=State.STOPPING, stop_requested=True), event.grace
            )
            actions: list[Action] = [Kill(signal.SIGTERM)] if event.signal else []
            return proc, [*actions, timer]
        if state in (State.BACKOFF, State.STARTING):
            return replace(proc, state=State.STOPPED, timer=proc.timer + 1), []
        return proc, []

    if isinstance(event, TimerFired):
        if event.token != proc.timer:
            return proc, []
        if state == State.BACKOFF:
            # reason="": the previous exit's reason must not be reported for the next exit
            proc, timer = _timer(
                replace(proc, state=State.STARTING, started_at=now, reason=""),
                proc.start_timeout,
            )
            return proc, [Spawn(), timer]
        if state == State.STARTING:
            return replace(proc, reason=f"not ready within {proc.start_timeout:g} s"), [
                Kill(signal.SIGKILL)
            ]
        if state == State.STOPPING:
            return proc, [Kill(signal.SIGKILL)]
        return proc, []

    # Exited
    assert isinstance(event, Exited)
    exited = replace(proc, pid=None, last_exit=event.status, ready_at=None)
    if state == State.STOPPING or proc.stop_requested:
        return replace(exited, state=State.STOPPED, timer=proc.timer + 1), []
    if state not in (State.STARTING, State.RUNNING):
        return exited, []
    reason = describe_exit(event.status)
    if event.status == EXIT_CONFIG:
        return replace(
            exited,
            state=State.FATAL,
            reason=f"cannot start: {reason} (configuration problem, not restarted)",
            timer=proc.timer + 1,
        ), []
    recent = (*(t for t in proc.recent_exits if now - t < CRASH_LOOP_WINDOW), now)
    if len(recent) >= CRASH_LOOP_EXITS:
        return replace(
            exited,
            state=State.FATAL,
            recent_exits=recent,
            timer=proc.timer + 1,
            reason=f"crash loop: {len(recent)} exits within {CRASH_LOOP_WINDOW:g} s, last {reason}",
        ), []
    delay = (
        BACKOFF_FIRST
        if len(recent) == 1
        else min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (len(recent) - 2))
    )
    proc, timer = _timer(
        replace(
            exited,
            state=State.BACKOFF,
            recent_exits=recent,
            restarts=proc.restarts + 1,
            reason=(proc.reason or reason),
        ),
        delay,
    )
    return proc, [timer]
