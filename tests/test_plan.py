"""The reload plan: a pure diff of the running config and the new one."""

from __future__ import annotations

import pytest

from layotto.boundary.config import Config, parse
from layotto.supervisor.plan import ReloadRefusedError, plan_reload, with_fresh_start

BASE = """
listeners: {grpc: "127.0.0.1:34904", http: "127.0.0.1:34999"}
hellos: {helloworld: {type: helloworld}}
state:
  mem: {type: in-memory}
  cache: {type: redis, workers: 2, metadata: {redisHost: "127.0.0.1:6379"}}
lock: {locks: {type: in-memory}}
"""


def config(text: str = BASE, source: str = "layotto.yaml") -> Config:
    return parse(text, source, environ={})


def test_unchanged_config_restarts_everything_but_in_memory_components() -> None:
    plan = plan_reload(config(), config())
    assert sorted(c.name for c in plan.start) == ["cache", "helloworld"]
    assert sorted(plan.keep) == ["locks", "mem"]
    assert sorted(plan.retire) == ["cache", "helloworld"]
    assert plan.removed == () and plan.lost_data == ()


def test_changed_in_memory_component_restarts_and_loses_its_data() -> None:
    new = config(
        BASE.replace(
            "mem: {type: in-memory}", "mem: {type: in-memory, metadata: {keyPrefix: name}}"
        )
    )
    plan = plan_reload(config(), new)
    assert "mem" in {c.name for c in plan.start}
    assert plan.lost_data == ("mem",)
    assert "mem" not in plan.keep


def test_worker_count_change_comes_from_the_new_config() -> None:
    plan = plan_reload(config(), config(BASE.replace("workers: 2", "workers: 4")))
    cache = next(c for c in plan.start if c.name == "cache")
    assert cache.workers == 4


def test_added_and_removed_components() -> None:
    new = config(
        BASE.replace("lock: {locks: {type: in-memory}}", "sequencer: {ids: {type: in-memory}}")
    )
    plan = plan_reload(config(), new)
    assert "ids" in {c.name for c in plan.start}
    assert plan.removed == ("locks",)
    assert "locks" in plan.retire and "locks" not in plan.keep


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("127.0.0.1:34904", "127.0.0.1:35000", "listeners changed"),
        ("127.0.0.1:34999", "127.0.0.1:36000", "listeners changed"),
    ],
)
def test_listener_changes_are_refused(old: str, new: str, message: str) -> None:
    with pytest.raises(ReloadRefusedError, match=message):
        plan_reload(config(), config(BASE.replace(old, new)))


def test_run_dir_change_is_refused() -> None:
    new = config(BASE + "runtime: {run_dir: /tmp/elsewhere}\n")
    with pytest.raises(ReloadRefusedError, match="run_dir"):
        plan_reload(config(), new)


def test_fewer_api_processes_are_refused_and_more_are_not() -> None:
    """The switch steers past the old API processes to the first new one,
    which is safe only with at least as many new ones (api/reuseport.py)."""
    one = config(BASE + "runtime: {api_processes: 1}\n")
    with pytest.raises(ReloadRefusedError, match=r"runtime.api_processes lowered \(2 -> 1\)"):
        plan_reload(config(), one)
    plan_reload(one, config())  # 1 -> 2
    plan_reload(config(), config(BASE + "runtime: {api_processes: 3}\n"))


def test_a_kept_component_without_a_live_worker_gets_a_fresh_start() -> None:
    plan = with_fresh_start(plan_reload(config(), config()), config(), ["locks"])
    assert sorted(c.name for c in plan.start) == ["cache", "helloworld", "locks"]
    assert plan.keep == ("mem",)
    assert sorted(plan.retire) == ["cache", "helloworld", "locks"]
    assert with_fresh_start(plan, config(), ["cache"]) == plan  # not kept: nothing to change
