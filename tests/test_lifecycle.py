"""The child-process state machine, decided purely: no processes, no timers."""

from __future__ import annotations

import itertools
import random
import signal
from collections.abc import Callable, Sequence

import pytest

from layotto.boundary.exits import EXIT_CONFIG
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.lifecycle import (
    Action,
    Event,
    Exited,
    Kill,
    Proc,
    Ready,
    SetTimer,
    Spawn,
    Spawned,
    Start,
    State,
    Stop,
    TimerFired,
    describe_exit,
    step,
)

START_TIMEOUT = 10.0


def run(proc: Proc, events: Sequence[tuple[Event, float]]) -> tuple[Proc, list[Action]]:
    """Apply events in order; returns the final state and the last step's actions."""
    actions: list[Action] = []
    for event, now in events:
        proc, actions = step(proc, event, now)
    return proc, actions


def timer_of(actions: Sequence[Action]) -> SetTimer:
    timers = [a for a in actions if isinstance(a, SetTimer)]
    assert len(timers) == 1, actions
    return timers[0]


def starting(now: float = 0.0, pid: int | None = 100) -> Proc:
    proc, _ = step(Proc(start_timeout=START_TIMEOUT), Start(), now)
    if pid is not None:
        proc, _ = step(proc, Spawned(pid), now)
    return proc


def running(now: float = 0.0) -> Proc:
    proc, _ = step(starting(now), Ready(), now)
    assert proc.state is State.RUNNING
    return proc


def crash_and_restart(proc: Proc, now: float, status: int = 1) -> tuple[Proc, float, float]:
    """A RUNNING child exits at `now`, is restarted and becomes ready again.

    Returns the new state, the back-off delay used and the time it is running again."""
    proc, actions = step(proc, Exited(status), now)
    assert proc.state is State.BACKOFF
    timer = timer_of(actions)
    now += timer.delay
    proc, actions = step(proc, TimerFired(timer.token), now)
    assert proc.state is State.STARTING
    assert Spawn() in actions
    proc, _ = run(proc, [(Spawned(200), now), (Ready(), now)])
    assert proc.state is State.RUNNING
    return proc, timer.delay, now


# -- start ---------------------------------------------------------------------


def test_start_spawns_and_arms_the_start_timer() -> None:
    proc, actions = step(Proc(start_timeout=START_TIMEOUT), Start(), 3.0)
    assert proc.state is State.STARTING
    assert proc.started_at == 3.0
    assert actions == [Spawn(), SetTimer(START_TIMEOUT, proc.timer)]


def test_spawned_records_the_pid() -> None:
    proc = starting(pid=None)
    proc, actions = step(proc, Spawned(4242), 1.0)
    assert (proc.state, proc.pid, actions) == (State.STARTING, 4242, [])


def test_ready_makes_it_running_and_voids_the_start_timer() -> None:
    proc, actions = step(Proc(start_timeout=START_TIMEOUT), Start(), 0.0)
    start_timer = timer_of(actions)
    proc, actions = run(proc, [(Spawned(7), 0.1), (Ready(), 0.5)])
    assert proc.state is State.RUNNING
    assert proc.ready_at == 0.5
    assert actions == []
    later, actions = step(proc, TimerFired(start_timer.token), START_TIMEOUT)
    assert later == proc
    assert actions == []


@pytest.mark.parametrize("make", [starting, running])
def test_start_is_ignored_while_alive(make: Callable[[], Proc]) -> None:
    proc = make()
    assert step(proc, Start(), 1.0) == (proc, [])


def test_ready_outside_starting_is_ignored() -> None:
    proc = running()
    assert step(proc, Ready(), 5.0) == (proc, [])
    stopped = Proc(start_timeout=START_TIMEOUT)
    assert step(stopped, Ready(), 5.0) == (stopped, [])


# -- exits and back-off ----------------------------------------------------------


def test_exit_while_running_restarts_immediately_the_first_time() -> None:
    proc = running()
    proc, actions = step(proc, Exited(1), 30.0)
    assert proc.state is State.BACKOFF
    assert proc.pid is None
    assert proc.ready_at is None
    assert proc.last_exit == 1
    assert proc.restarts == 1
    assert proc.reason == "exited with status 1"
    timer = timer_of(actions)
    assert timer.delay == 0.0
    assert actions == [timer]
    proc, actions = step(proc, TimerFired(timer.token), 30.0)
    assert proc.state is State.STARTING
    assert proc.started_at == 30.0
    assert actions == [Spawn(), SetTimer(START_TIMEOUT, proc.timer)]


def test_back_off_grows_for_repeated_exits() -> None:
    proc, now, delays = running(), 0.0, []
    for _ in range(lc.CRASH_LOOP_EXITS - 1):
        proc, delay, now = crash_and_restart(proc, now + 1.0)
        delays.append(delay)
    assert delays[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(delays))
    assert delays == [0.0, 0.5, 1.0, 2.0]


def test_back_off_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lc, "CRASH_LOOP_EXITS", 1000)
    proc, now, delays = running(), 0.0, []
    for _ in range(15):
        proc, delay, now = crash_and_restart(proc, now + 0.1)
        delays.append(delay)
    assert delays == sorted(delays)
    assert max(delays) == lc.BACKOFF_CAP
    assert delays[-5:] == [lc.BACKOFF_CAP] * 5


def test_restarts_counter_increments_per_restart() -> None:
    proc, now = running(), 0.0
    for expected in (1, 2, 3):
        proc, _, now = crash_and_restart(proc, now + 20.0)
        assert proc.restarts == expected


def test_exit_while_starting_is_restarted_too() -> None:
    proc, actions = step(starting(), Exited(3), 1.0)
    assert proc.state is State.BACKOFF
    assert proc.restarts == 1
    assert timer_of(actions).delay == 0.0


def test_reason_describes_the_latest_exit() -> None:
    proc, actions = step(running(), Exited(1), 1.0)
    assert proc.reason == "exited with status 1"
    proc, _ = step(proc, TimerFired(timer_of(actions).token), 1.0)
    proc, _ = step(proc, Spawned(101), 1.1)
    # crashes again before it is ready: the reason must not be the first exit's
    proc, _ = step(proc, Exited(-signal.SIGSEGV), 1.2)
    assert proc.state is State.BACKOFF
    assert proc.reason == "killed by SIGSEGV"


# -- stale timers ----------------------------------------------------------------


def test_stale_timer_tokens_are_ignored() -> None:
    proc, actions = step(running(), Exited(1), 1.0)
    token = timer_of(actions).token
    for stale in (token - 1, token + 1, 0):
        assert step(proc, TimerFired(stale), 2.0) == (proc, [])
    # the back-off timer, once used, is stale in STARTING
    proc, _ = step(proc, TimerFired(token), 1.0)
    assert proc.state is State.STARTING
    assert step(proc, TimerFired(token), 2.0) == (proc, [])


# -- crash loop ------------------------------------------------------------------


def test_five_exits_within_a_minute_is_a_crash_loop() -> None:
    proc, now = running(), 0.0
    for _ in range(lc.CRASH_LOOP_EXITS - 1):
        proc, _, now = crash_and_restart(proc, now + 5.0)
    restarts = proc.restarts
    proc, actions = step(proc, Exited(2), now + 5.0)
    assert proc.state is State.FATAL
    assert actions == []
    assert "crash loop" in proc.reason
    assert "5 exits within 60 s" in proc.reason
    assert "exited with status 2" in proc.reason
    assert proc.restarts == restarts
    assert proc.pid is None


def test_fatal_voids_the_pending_timer_and_start_recovers() -> None:
    proc, now = running(), 0.0
    for _ in range(lc.CRASH_LOOP_EXITS - 1):
        proc, _, now = crash_and_restart(proc, now + 1.0)
    before = proc.timer
    proc, _ = step(proc, Exited(1), now + 1.0)
    assert proc.state is State.FATAL
    assert step(proc, TimerFired(before), now + 2.0) == (proc, [])
    proc, actions = step(proc, Start(), now + 3.0)
    assert proc.state is State.STARTING
    assert proc.reason == ""
    assert proc.recent_exits == ()
    assert actions == [Spawn(), SetTimer(START_TIMEOUT, proc.timer)]


@pytest.mark.parametrize("interval", [15.01, 20.0, 61.0])
def test_exits_spread_over_more_than_a_minute_never_reach_fatal(interval: float) -> None:
    proc, now = running(), 0.0
    for _ in range(30):
        proc, _, now = crash_and_restart(proc, now + interval)
    assert proc.restarts == 30


def test_exits_just_inside_the_window_reach_fatal() -> None:
    proc, now = running(), 0.0
    for _ in range(lc.CRASH_LOOP_EXITS - 1):
        proc, _, now = crash_and_restart(proc, now + 14.0)
    proc, _ = step(proc, Exited(1), now + 14.0)
    assert proc.state is State.FATAL


@pytest.mark.parametrize("make", [starting, running])
def test_config_exit_status_is_fatal_at_once(make: Callable[[], Proc]) -> None:
    proc = make()
    proc, actions = step(proc, Exited(EXIT_CONFIG), 1.0)
    assert proc.state is State.FATAL
    assert actions == []
    assert proc.restarts == 0
    assert "exited with status 78" in proc.reason
    assert "configuration" in proc.reason
    assert proc.last_exit == 78


# -- start timeout ---------------------------------------------------------------


def test_start_timeout_kills_and_says_why() -> None:
    proc, actions = step(Proc(start_timeout=START_TIMEOUT), Start(), 0.0)
    token = timer_of(actions).token
    proc, _ = step(proc, Spawned(55), 0.1)
    proc, actions = step(proc, TimerFired(token), START_TIMEOUT)
    assert actions == [Kill(signal.SIGKILL)]
    assert proc.reason == "not ready within 10 s"
    # the kill's exit keeps the timeout as the reason and backs off
    proc, actions = step(proc, Exited(-signal.SIGKILL), START_TIMEOUT + 0.1)
    assert proc.state is State.BACKOFF
    assert proc.reason == "not ready within 10 s"
    assert len(actions) == 1


# -- stop ------------------------------------------------------------------------


def test_stop_while_running_terms_then_kills_then_stops() -> None:
    proc, actions = step(running(), Stop(grace=3.0), 10.0)
    assert proc.state is State.STOPPING
    timer = timer_of(actions)
    assert actions == [Kill(signal.SIGTERM), SetTimer(3.0, timer.token)]
    proc, actions = step(proc, TimerFired(timer.token), 13.0)
    assert proc.state is State.STOPPING
    assert actions == [Kill(signal.SIGKILL)]
    proc, actions = step(proc, Exited(-signal.SIGKILL), 13.1)
    assert proc.state is State.STOPPED
    assert actions == []
    assert proc.restarts == 0
    assert proc.pid is None
    # the escalation timer is void once stopped
    assert step(proc, TimerFired(timer.token), 14.0) == (proc, [])


def test_stop_then_clean_exit_is_stopped_not_restarted() -> None:
    proc, _ = step(running(), Stop(grace=3.0), 10.0)
    proc, actions = step(proc, Exited(0), 10.5)
    assert (proc.state, actions, proc.restarts) == (State.STOPPED, [], 0)


def test_stop_while_starting_with_a_pid_terms_it() -> None:
    proc, actions = step(starting(), Stop(grace=2.0), 1.0)
    assert proc.state is State.STOPPING
    assert actions[0] == Kill(signal.SIGTERM)
    # a late Ready must not bring it back
    proc, actions = step(proc, Ready(), 1.1)
    assert (proc.state, actions) == (State.STOPPING, [])
    proc, actions = step(proc, Exited(-signal.SIGTERM), 1.2)
    assert (proc.state, actions) == (State.STOPPED, [])


def test_stop_during_backoff_is_stopped_and_voids_the_restart() -> None:
    proc, actions = step(running(), Exited(1), 1.0)
    restart = timer_of(actions)
    proc, actions = step(proc, Stop(grace=3.0), 1.0)
    assert (proc.state, actions) == (State.STOPPED, [])
    assert step(proc, TimerFired(restart.token), 1.0) == (proc, [])


def test_spawned_after_stop_is_terminated() -> None:
    proc = starting(pid=None)  # Spawn issued, the pid not known yet
    proc, actions = step(proc, Stop(grace=3.0), 0.1)
    assert (proc.state, actions) == (State.STOPPED, [])
    proc, actions = step(proc, Spawned(999), 0.2)
    assert proc.state is State.STOPPED
    assert actions == [Kill(signal.SIGTERM)]
    proc, actions = step(proc, Exited(-signal.SIGTERM), 0.3)
    assert (proc.state, actions, proc.pid) == (State.STOPPED, [], None)


@pytest.mark.parametrize("status", [0, 1, -9])
def test_stop_when_not_running_changes_nothing(status: int) -> None:
    stopped = Proc(start_timeout=START_TIMEOUT)
    assert step(stopped, Stop(grace=1.0), 0.0) == (stopped, [])
    fatal, _ = step(running(), Exited(EXIT_CONFIG), 0.0)
    assert step(fatal, Stop(grace=1.0), 0.0) == (fatal, [])
    # and an exit reported in these states never restarts anything
    for proc in (stopped, fatal):
        after, actions = step(proc, Exited(status), 1.0)
        assert after.state is proc.state
        assert actions == []


# -- describe_exit ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (0, "exited with status 0"),
        (1, "exited with status 1"),
        (78, "exited with status 78"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGTERM, "killed by SIGTERM"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-200, "killed by signal 200"),
    ],
)
def test_describe_exit(status: int, text: str) -> None:
    assert describe_exit(status) == text


# -- random sequences ------------------------------------------------------------


def _random_event(rng: random.Random, proc: Proc) -> Event:
    choice = rng.randrange(7)
    if choice == 0:
        return Start()
    if choice == 1:
        return Spawned(rng.randrange(2, 60000))
    if choice == 2:
        return Ready()
    if choice == 3:
        return Exited(rng.choice([0, 1, 2, 78, -9, -15, -11]))
    if choice == 4:
        return Stop(grace=rng.choice([0.5, 5.0]))
    # timers: mostly the live one, sometimes a stale one
    return TimerFired(proc.timer if rng.random() < 0.7 else rng.randrange(0, proc.timer + 2))


@pytest.mark.parametrize("seed", range(8))
def test_random_sequences_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    proc, now = Proc(start_timeout=START_TIMEOUT), 0.0
    seen: set[State] = set()
    for _ in range(3000):
        event = _random_event(rng, proc)
        now += rng.choice([0.0, 0.01, 0.5, 3.0, 30.0])
        after, actions = step(proc, event, now)
        seen.add(after.state)

        spawned = Spawn() in actions
        if spawned:
            # only a Start of a dead child, or its own restart timer, spawns
            assert (isinstance(event, Start) and proc.state in (State.STOPPED, State.FATAL)) or (
                isinstance(event, TimerFired)
                and event.token == proc.timer
                and proc.state is State.BACKOFF
            ), (proc, event)
            assert after.state is State.STARTING
        if proc.state in (State.STOPPED, State.FATAL) and not isinstance(event, Start):
            assert after.state is proc.state
            assert not spawned
            assert all(isinstance(a, Kill) for a in actions)
        if isinstance(event, TimerFired) and event.token != proc.timer:
            assert (after, actions) == (proc, [])
        timers = [a for a in actions if isinstance(a, SetTimer)]
        assert len(timers) <= 1
        for timer in timers:
            assert timer.token == after.timer
            assert timer.delay >= 0
        assert after.timer >= proc.timer
        assert after.restarts >= proc.restarts
        if isinstance(event, Exited):
            assert after.pid is None
        if after.state is State.BACKOFF:
            assert 0 <= len(after.recent_exits) < lc.CRASH_LOOP_EXITS
        if after.state is State.RUNNING:
            assert after.ready_at is not None
        if after.state is State.FATAL and proc.state is not State.FATAL:
            assert after.reason
        proc = after
    assert {State.STARTING, State.RUNNING, State.BACKOFF, State.STOPPING} <= seen
