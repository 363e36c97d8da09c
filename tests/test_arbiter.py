"""The supervisor's decisions, driven through the fake launcher: no process runs.

Reload order and rollback, scaling with retire-before-stop, stop order, one
operation at a time and crash loops, asserted on the order of what the
arbiter asked the launcher to do. Time is trio's MockClock (autojump) where
a timeout or back-off matters, so nothing here sleeps for real.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from layotto.boundary import config
from layotto.supervisor import health
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.arbiter import Arbiter
from tests.fake_launcher import FakeLauncher, Script

# Generation 1: zygote@1, helloworld#0, cache#0, cache#1, locks#0, api@1#0, api@1#1
# (runtime.api_processes defaults to 2). A reload replaces all but locks#0
# (in memory, unchanged: its data stays).
CONFIG = """
listeners: {grpc: "127.0.0.1:1", http: "127.0.0.1:2"}
hellos: {helloworld: {type: helloworld}}
state: {cache: {type: redis, workers: 2, metadata: {redisHost: "127.0.0.1:6379"}}}
lock: {locks: {type: in-memory}}
"""
OLD_WORKERS = ("helloworld#0", "cache#0", "cache#1")
NEW_WORKERS = ("helloworld#1", "cache#2", "cache#3")
OLD_APIS = ("api@1#0", "api@1#1")
NEW_APIS = ("api@2#0", "api@2#1")
LIMIT = 600  # virtual seconds: far above any timeout the supervisor uses


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "layotto.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@asynccontextmanager
async def supervising(
    config_file: Path, launcher: FakeLauncher, *, wait_ready: bool = True
) -> AsyncIterator[Arbiter]:
    """A running arbiter over the fake launcher; cancelled on the way out."""
    arbiter = Arbiter(config.load(str(config_file), environ={}), str(config_file.parent), launcher)
    async with trio.open_nursery() as nursery:
        await nursery.start(arbiter.run)
        if wait_ready:
            with trio.fail_after(LIMIT):
                await arbiter.wait_until(lambda: all(c.up for c in arbiter.children.values()))
        yield arbiter
        nursery.cancel_scope.cancel()


class Pending:
    """A command under way in the background; ``answer`` is {} until it is answered."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] = {}
        self.answered = trio.Event()

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, arbiter: Arbiter, name: str, args: dict[str, Any] | None = None
    ) -> Pending:
        pending = cls()

        async def run() -> None:
            pending.answer = await arbiter.command(name, args)
            pending.answered.set()

        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        return pending

    async def wait(self) -> dict[str, Any]:
        with trio.fail_after(LIMIT):
            await self.answered.wait()
        return self.answer


# -- reload -------------------------------------------------------------------------


async def test_reload_starts_the_new_generation_before_it_stops_the_old(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        kept = arbiter.routing["locks"]
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")
        assert answer["ok"], answer
        assert answer["generation"] == 2

        at = launcher.index
        # the new zygote runs before anything is forked from it
        for worker in NEW_WORKERS:
            assert at("report", "zygote@2", "ready") < at("spawn", worker)
            assert launcher.processes[worker].forked_from == "zygote@2"
        # the new APIs start once every new worker is ready, and are forked too
        for api in NEW_APIS:
            assert max(at("report", w, "ready") for w in NEW_WORKERS) < at("spawn", api)
            assert launcher.processes[api].forked_from == "zygote@2"
        # switch: the old APIs drain only once every new one is ready, and
        # steer new connections past themselves, to the first new member
        for old in OLD_APIS:
            assert max(at("report", new, "ready") for new in NEW_APIS) < at("send", old, "drain")
            assert (old, {"cmd": "drain", "steer_to": 2}) in launcher.sent
        # the old workers stop once every old API is gone, the old zygote after them
        for worker in OLD_WORKERS:
            for old in OLD_APIS:
                assert at("exit", old, 0) < at("signal", worker, "SIGTERM")
            assert at("exit", worker, 0) < at("signal", "zygote@1", "SIGTERM")
        # the old APIs were not signalled: they drain and exit by themselves
        for old in OLD_APIS:
            assert launcher.signalled(old) == []
        # once only new ones are left, member 0 serves again
        for new in NEW_APIS:
            with trio.fail_after(LIMIT):  # told by a task of its own
                await launcher.wait_for(lambda new=new: launcher.did("send", new, "steer"))
            assert at("exit", "zygote@1", 0) < at("send", new, "steer")
            assert (new, {"cmd": "steer", "to": 0}) in launcher.sent
            assert arbiter.children[new].spec.steer_to == 0  # type: ignore[union-attr]
        # the unchanged in-memory worker carries over, and the new APIs route to it
        assert launcher.signalled("locks#0") == []
        assert arbiter.routing["locks"] == kept
        for api in arbiter.apis:
            assert api.spec.workers["locks"] == tuple(kept)  # type: ignore[union-attr]

        assert (arbiter.generation, arbiter.api_ids, arbiter.zygote_id) == (
            2,
            list(NEW_APIS),
            "zygote@2",
        )
        assert sorted(arbiter.children) == sorted(["zygote@2", *NEW_APIS, "locks#0", *NEW_WORKERS])
        assert arbiter.last_reload is not None and arbiter.last_reload["ok"]


async def test_reload_stops_the_workers_of_a_removed_component(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        without_hellos = CONFIG.replace("hellos: {helloworld: {type: helloworld}}\n", "")
        await trio.Path(config_file).write_text(without_hellos)
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")
        assert answer["ok"], answer
        assert launcher.signalled("helloworld#0") == ["SIGTERM"]
        assert "helloworld" not in arbiter.routing
        assert not any(c.startswith("helloworld") for c in arbiter.children)


def assert_generation_1_untouched(launcher: FakeLauncher, arbiter: Arbiter) -> None:
    for api in OLD_APIS:
        assert not launcher.did("send", api, "drain")
    for child in (*OLD_APIS, "zygote@1", "locks#0", *OLD_WORKERS):
        assert launcher.signalled(child) == [], child
        assert arbiter.children[child].up, child
    assert (arbiter.generation, arbiter.api_ids, arbiter.zygote_id) == (
        1,
        list(OLD_APIS),
        "zygote@1",
    )


async def test_reload_rolls_back_when_a_new_worker_exits_with_a_config_error(
    config_file: Path, launcher: FakeLauncher
) -> None:
    launcher.scripts["cache#2"] = Script(exit_status=78)
    async with supervising(config_file, launcher) as arbiter:
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")

        assert not answer["ok"]
        assert "generation 2 did not start" in answer["error"]
        assert "cache#2 FATAL" in answer["error"] and "status 78" in answer["error"]
        assert answer["generation"] == 1
        assert not set(NEW_APIS) & set(launcher.spawned())  # no API for a generation that failed
        for child in ("zygote@2", "helloworld#1", "cache#3"):
            assert launcher.signalled(child) == ["SIGTERM"], child
            assert child not in arbiter.children
        assert_generation_1_untouched(launcher, arbiter)
        assert arbiter.last_reload is not None
        assert arbiter.last_reload["error"] == answer["error"]


async def test_reload_rolls_back_when_a_new_worker_cannot_reach_its_backend(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    """A new generation takes traffic only once each of its workers has
    reached its backend: one on a Redis that is not there is a failed reload
    (it went live and every call failed until the next reload)."""
    launcher.scripts["cache#3"] = Script(backend_down="redis at 127.0.0.1:1: refused")
    async with supervising(config_file, launcher) as arbiter:
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")

        assert not answer["ok"]
        assert "cache#3 cannot reach its backend (redis at 127.0.0.1:1: refused)" in answer["error"]
        assert not set(NEW_APIS) & set(launcher.spawned())
        assert_generation_1_untouched(launcher, arbiter)


@pytest.mark.parametrize("never_ready", ["helloworld#1", "api@2#1"])
async def test_reload_rolls_back_when_a_new_process_never_gets_ready(
    config_file: Path,
    launcher: FakeLauncher,
    autojump_clock: trio.testing.MockClock,
    never_ready: str,
) -> None:
    launcher.scripts[never_ready] = Script(ready=False)
    async with supervising(config_file, launcher) as arbiter:
        start_timeout = arbiter.config.runtime.start_timeout
        began = trio.current_time()
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")

        assert not answer["ok"]
        assert f"{never_ready} " in answer["error"]
        assert f"start limit {start_timeout:g} s" in answer["error"]
        assert trio.current_time() - began >= start_timeout
        assert never_ready not in arbiter.children
        assert_generation_1_untouched(launcher, arbiter)
        # readiness still reports generation 1 serving, and the failed reload
        ready, components = health.readiness(arbiter)
        assert ready
        assert components["last_reload"]["details"]["error"] == answer["error"]


async def test_a_second_operation_is_refused_while_one_runs(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    launcher.scripts["zygote@2"] = Script(ready=False)  # keeps the reload waiting
    async with supervising(config_file, launcher) as arbiter, trio.open_nursery() as nursery:
        reload = await Pending.start(nursery, arbiter, "reload")
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.did("spawn", "zygote@2"))
        assert reload.answer == {}  # still under way

        for name, args in (("scale", {"component": "cache", "workers": 3}), ("reload", None)):
            refused = await arbiter.command(name, args)
            assert refused == {
                "ok": False,
                "error": f"cannot {name}: a reload is under way; try again later",
            }
        status = await arbiter.command("status")
        assert status["operation"] == "reload"

        assert not (await reload.wait())["ok"]  # the zygote never got ready: rolled back
        assert (await arbiter.command("scale", {"component": "cache", "workers": 3}))["ok"]


async def test_sighup_runs_the_same_reload_as_the_command(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        await trio.testing.wait_all_tasks_blocked()  # its signal receiver is installed
        os.kill(os.getpid(), signal.SIGHUP)
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: arbiter.last_reload is not None)
        assert arbiter.last_reload is not None and arbiter.last_reload["ok"]
        assert (arbiter.generation, arbiter.api_ids) == (2, list(NEW_APIS))
        assert launcher.index("report", "api@2#1", "ready") < launcher.index(
            "send", "api@1#0", "drain"
        )


# -- scaling ------------------------------------------------------------------------


async def test_scale_up_starts_workers_and_routes_to_them(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        with trio.fail_after(LIMIT):
            answer = await arbiter.command("scale", {"component": "cache", "workers": 4})
        assert answer == {"ok": True, "component": "cache", "workers": 4}
        assert [w.id for w in arbiter.workers_of("cache")] == [f"cache#{n}" for n in range(4)]
        assert launcher.processes["cache#3"].forked_from == "zygote@1"
        for api in OLD_APIS:  # every API process routes to them
            routes = [m for child, m in launcher.sent if child == api and m["cmd"] == "workers"]
            assert routes[-1]["addresses"] == arbiter.routing["cache"]
            assert len(routes[-1]["addresses"]) == 4
        # nothing was stopped to scale up
        assert not any(a[0] == "signal" for a in launcher.actions)


async def test_scale_down_stops_a_worker_only_once_the_api_retired_it(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    async with supervising(config_file, launcher) as arbiter, trio.open_nursery() as nursery:
        retired = arbiter.children["cache#1"]
        scale = await Pending.start(nursery, arbiter, "scale", {"component": "cache", "workers": 1})
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.did("send", "api@1#1", "workers"))
        assert arbiter.routing["cache"] == [arbiter.children["cache#0"].address]

        await trio.sleep(50)  # calls to it may still be under way: it keeps running
        assert launcher.signalled("cache#1") == []
        assert scale.answer == {}

        # one API process is done with it, the other may still hold calls there
        launcher.processes["api@1#0"].report({"event": "retired", "address": retired.address})
        await trio.sleep(50)
        assert launcher.signalled("cache#1") == []
        assert scale.answer == {}

        launcher.processes["api@1#1"].report({"event": "retired", "address": retired.address})
        assert await scale.wait() == {"ok": True, "component": "cache", "workers": 1}
        assert launcher.index("report", "api@1#1", "retired") < launcher.index(
            "signal", "cache#1", "SIGTERM"
        )
        assert "cache#1" not in arbiter.children
        assert launcher.signalled("cache#0") == []


async def test_a_worker_the_api_never_retired_is_stopped_by_the_next_reload(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        with trio.fail_after(LIMIT):  # scale waits 120 s for the report, then answers
            answer = await arbiter.command("scale", {"component": "cache", "workers": 1})
        assert answer["ok"]
        assert launcher.signalled("cache#1") == [] and arbiter.children["cache#1"].up

        with trio.fail_after(LIMIT):
            assert (await arbiter.command("reload"))["ok"]
        for api in OLD_APIS:
            assert launcher.index("exit", api, 0) < launcher.index("signal", "cache#1", "SIGTERM")
        assert "cache#1" not in arbiter.children


async def test_scale_refuses_a_second_worker_for_an_in_memory_component(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        answer = await arbiter.command("scale", {"component": "locks", "workers": 2})
        assert not answer["ok"] and "exactly 1 worker" in answer["error"]
        assert launcher.spawned().count("locks#1") == 0


# -- stopping -----------------------------------------------------------------------


async def test_stop_stops_the_apis_first_and_the_rest_once_all_are_down(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    for api in OLD_APIS:
        launcher.scripts[api] = Script(exits_on_term=False)  # finishing their calls
    arbiter = Arbiter(config.load(str(config_file), environ={}), str(config_file.parent), launcher)
    others = ("zygote@1", "locks#0", *OLD_WORKERS)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(arbiter.run)
            await arbiter.wait_until(lambda: all(c.up for c in arbiter.children.values()))
            assert await arbiter.command("stop") == {"ok": True}
            for api in OLD_APIS:
                assert launcher.signalled(api) == ["SIGTERM"]

            await trio.sleep(5)  # within their grace: the APIs are still finishing calls
            launcher.processes["api@1#0"].exit(0)
            await trio.sleep(5)  # one is down; the other still has calls to finish
            for child in others:
                assert launcher.signalled(child) == [], child

            launcher.processes["api@1#1"].exit(0)
        # arbiter.run returned: every child is down
    for child in others:
        assert launcher.index("exit", "api@1#1", 0) < launcher.index("signal", child, "SIGTERM")
    assert all(c.down for c in arbiter.children.values())


async def test_an_api_that_ignores_sigterm_is_killed_after_its_grace(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    launcher.scripts["api@1#0"] = Script(exits_on_term=False)
    arbiter = Arbiter(config.load(str(config_file), environ={}), str(config_file.parent), launcher)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            await nursery.start(arbiter.run)
            await arbiter.wait_until(lambda: all(c.up for c in arbiter.children.values()))
            began = trio.current_time()
            await arbiter.command("stop")
    grace = arbiter.config.runtime.shutdown_grace + 5.0
    assert launcher.signalled("api@1#0") == ["SIGTERM", "SIGKILL"]
    assert trio.current_time() - began >= grace
    assert launcher.index("exit", "api@1#0", -9) < launcher.index("signal", "cache#0", "SIGTERM")


# -- restarts -----------------------------------------------------------------------


async def test_a_child_that_keeps_crashing_is_fatal_after_five_exits_in_a_minute(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    launcher.scripts["helloworld#0"] = Script(exit_status=1)
    async with supervising(config_file, launcher, wait_ready=False) as arbiter:
        child = arbiter.children["helloworld#0"]
        began = trio.current_time()
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: child.proc.state == lc.State.FATAL)

        assert launcher.spawned().count("helloworld#0") == lc.CRASH_LOOP_EXITS
        assert child.proc.restarts == lc.CRASH_LOOP_EXITS - 1
        assert child.reason().startswith("crash loop: 5 exits within 60 s")
        # back-off between restarts: at once, then 0.5, 1 and 2 s
        assert trio.current_time() - began == pytest.approx(3.5)
        await trio.sleep(LIMIT)  # FATAL is final: no restart however long we wait
        assert launcher.spawned().count("helloworld#0") == lc.CRASH_LOOP_EXITS
        alive, components = health.liveness(arbiter)
        assert not alive and components["helloworld#0"]["status"] == "DOWN"


async def test_a_worker_that_cannot_be_built_is_fatal_with_its_own_reason(
    config_file: Path, launcher: FakeLauncher
) -> None:
    launcher.scripts["cache#1"] = Script(ready=False)
    async with supervising(config_file, launcher, wait_ready=False) as arbiter:
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.did("spawn", "cache#1"))
        worker = launcher.processes["cache#1"]
        worker.report({"event": "fatal", "reason": "redisHost: no port"})
        worker.exit(78)
        child = arbiter.children["cache#1"]
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: child.proc.state == lc.State.FATAL)
        assert launcher.spawned().count("cache#1") == 1  # a config problem: not restarted
        status = await arbiter.command("status")
        row = next(r for r in status["processes"] if r["name"] == "cache#1")
        assert (row["state"], row["reason"]) == ("FATAL", "redisHost: no port")
        assert status["ready"]  # cache#0 still serves the component ...
        assert not health.liveness(arbiter)[0]  # ... but this cannot heal by itself


async def test_a_killed_worker_is_restarted_at_once(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        first = launcher.processes["cache#0"]
        first.exit(-9)
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(
                lambda: (
                    launcher.processes["cache#0"] is not first and arbiter.children["cache#0"].up
                )
            )
        assert arbiter.children["cache#0"].proc.restarts == 1
        assert arbiter.children["cache#0"].proc.pid == launcher.processes["cache#0"].pid


async def test_status_lists_every_process_with_its_request_count(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        status = await arbiter.command("status")
        assert status["ok"] and status["ready"] and status["generation"] == 1
        assert launcher.did("send", "api@1#0", "stats")
        rows = {row["name"]: row for row in status["processes"]}
        assert sorted(rows) == sorted(["zygote@1", *OLD_APIS, "locks#0", *OLD_WORKERS])
        assert rows["cache#1"]["state"] == "RUNNING"
        assert rows["cache#1"]["pid"] == launcher.processes["cache#1"].pid


# -- a reload heals what a restart could not ---------------------------------------


@pytest.mark.parametrize("crashing", ["locks#0", "cache#1"])
async def test_a_reload_gives_a_fatal_component_a_fresh_start_and_forgets_the_fatal_entry(
    config_file: Path,
    launcher: FakeLauncher,
    autojump_clock: trio.testing.MockClock,
    crashing: str,
) -> None:
    """locks is in memory with an unchanged config, so a reload used to keep
    its (FATAL, processless) worker: "generation 2 serving" and NOT READY for
    good. And a FATAL entry a reload did replace stayed in the table, so
    liveness said DOWN on a healthy sidecar forever."""
    launcher.scripts[crashing] = Script(exit_status=1)
    async with supervising(config_file, launcher, wait_ready=False) as arbiter:
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(
                lambda: arbiter.children[crashing].proc.state == lc.State.FATAL
            )
        assert not health.liveness(arbiter)[0]

        with trio.fail_after(LIMIT):
            answer = await arbiter.command("reload")

        assert answer["ok"], answer
        assert crashing not in arbiter.children  # replaced, and forgotten
        component = crashing.split("#", maxsplit=1)[0]
        assert [w.up for w in arbiter.workers_of(component)] == [True] * len(
            arbiter.workers_of(component)
        )
        assert arbiter.workers_of(component)
        assert health.liveness(arbiter)[0]
        assert health.readiness(arbiter)[0]


# -- two API processes per generation ----------------------------------------------


async def test_a_killed_api_is_restarted_while_the_other_serves(
    config_file: Path, launcher: FakeLauncher
) -> None:
    async with supervising(config_file, launcher) as arbiter:
        first = launcher.processes["api@1#0"]
        launcher.scripts["api@1#0"] = Script(ready=False)  # its restart takes a while
        first.exit(-9)
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.processes["api@1#0"] is not first)
        # the other one never stopped, and the sidecar stays ready on it
        assert launcher.signalled("api@1#1") == [] and arbiter.children["api@1#1"].up
        ready, components = health.readiness(arbiter)
        assert ready
        assert components["api"]["status"] == "UP"
        assert components["api"]["details"]["running"] == 1
        assert components["api@1#0"]["status"] == "DOWN"

        launcher.processes["api@1#0"].report({"event": "ready"})
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: arbiter.children["api@1#0"].up)
        assert arbiter.children["api@1#0"].proc.restarts == 1
        assert health.readiness(arbiter)[1]["api"]["details"]["running"] == 2

        launcher.processes["api@1#1"].exit(-9)  # both down at once: not ready
        launcher.processes["api@1#0"].exit(-9)
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: not any(a.up for a in arbiter.apis))
        assert health.readiness(arbiter)[1]["api"]["status"] == "DOWN"


async def test_an_api_that_exits_no_longer_holds_a_retired_worker(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    async with supervising(config_file, launcher) as arbiter, trio.open_nursery() as nursery:
        retired = arbiter.children["cache#1"]
        scale = await Pending.start(nursery, arbiter, "scale", {"component": "cache", "workers": 1})
        launcher.processes["api@1#0"].report({"event": "retired", "address": retired.address})
        await trio.sleep(10)
        assert launcher.signalled("cache#1") == []
        # the other dies with its calls: it holds nothing there any more, and
        # its restart starts with the new routing
        launcher.processes["api@1#1"].exit(-9)
        assert await scale.wait() == {"ok": True, "component": "cache", "workers": 1}
        assert launcher.index("exit", "api@1#1", -9) < launcher.index(
            "signal", "cache#1", "SIGTERM"
        )
        with trio.fail_after(LIMIT):
            await arbiter.wait_until(lambda: arbiter.children["api@1#1"].up)
        restarted = arbiter.children["api@1#1"].spec
        assert restarted.workers["cache"] == (arbiter.children["cache#0"].address,)  # type: ignore[union-attr]


async def test_status_sums_the_request_counts_of_every_api(
    config_file: Path, launcher: FakeLauncher
) -> None:
    address = str(Path(config_file.parent, "w-cache-0.ipc"))
    launcher.scripts["api@1#0"] = Script(requests={"cache": {f"ipc://{address}": 3}})
    launcher.scripts["api@1#1"] = Script(requests={"cache": {f"ipc://{address}": 4}})
    async with supervising(config_file, launcher) as arbiter:
        status = await arbiter.command("status")
        rows = {row["name"]: row for row in status["processes"]}
        assert arbiter.children["cache#0"].address == f"ipc://{address}"
        assert rows["cache#0"]["requests"] == 7


async def test_a_new_api_restarted_during_the_drain_keeps_the_steering(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    """A restarted API process attaches its spec's program once it listens:
    "ret 0" in the middle of a drain would send new connections back to a
    draining old process."""
    for api in OLD_APIS:
        launcher.scripts[api] = Script(exits_on_drain=False)  # their clients take a while
    async with supervising(config_file, launcher) as arbiter, trio.open_nursery() as nursery:
        reload = await Pending.start(nursery, arbiter, "reload")
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.did("send", "api@1#1", "drain"))
        first = launcher.processes["api@2#0"]
        first.exit(-9)
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.processes["api@2#0"] is not first)
        assert launcher.processes["api@2#0"].spec.steer_to == 2  # type: ignore[union-attr]
        assert launcher.spawned().count("api@1#0") == 1  # old ones are never restarted

        for api in OLD_APIS:
            launcher.processes[api].exit(0)
        assert (await reload.wait())["ok"]
        assert all(a.spec.steer_to == 0 for a in arbiter.apis)  # type: ignore[union-attr]


async def test_the_switch_waits_while_an_old_api_is_starting(
    config_file: Path, launcher: FakeLauncher, autojump_clock: trio.testing.MockClock
) -> None:
    """An old API process that comes up after the switch would attach "ret 0"."""
    async with supervising(config_file, launcher) as arbiter, trio.open_nursery() as nursery:
        launcher.scripts["api@1#1"] = Script(ready=False)
        launcher.processes["api@1#1"].exit(-9)
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.spawned().count("api@1#1") == 2)
        reload = await Pending.start(nursery, arbiter, "reload")
        with trio.fail_after(LIMIT):
            await launcher.wait_for(lambda: launcher.did("report", "api@2#1", "ready"))
        await trio.sleep(1)
        assert not launcher.did("send", "api@1#0", "drain")  # api@1#1 is still starting

        launcher.processes["api@1#1"].report({"event": "ready"})
        assert (await reload.wait())["ok"]
        drained = launcher.index("send", "api@1#1", "drain")
        assert launcher.index("report", "api@1#1", "ready") < drained
        assert ("api@1#1", {"cmd": "drain", "steer_to": 2}) in launcher.sent


async def test_one_api_process_per_generation(config_file: Path, launcher: FakeLauncher) -> None:
    await trio.Path(config_file).write_text(CONFIG + "runtime: {api_processes: 1}\n")
    async with supervising(config_file, launcher) as arbiter:
        assert arbiter.api_ids == ["api@1#0"]
        with trio.fail_after(LIMIT):
            assert (await arbiter.command("reload"))["ok"]
        assert ("api@1#0", {"cmd": "drain", "steer_to": 1}) in launcher.sent
        assert arbiter.api_ids == ["api@2#0"]
