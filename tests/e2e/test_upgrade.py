"""Hot upgrade, scaling and faults under load, through the real `layotto` command."""

from __future__ import annotations

import os
import re
import select
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.e2e.test_supervision import http_get, parent_of, pid_of
from tests.load import Load
from tests.redis_server import RedisServer, free_port
from tests.sidecar import Sidecar, running_sidecar

# A short connection age keeps each upgrade's drain to about two seconds.
RUNTIME = "runtime: {max_connection_age: 2, shutdown_grace: 5, request_timeout: 10}\n"
LISTENERS = (
    "listeners:\n"
    "  grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}'\n"
    "  http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'\n"
)


def redis_config(state_workers: int = 2, extra: str = "") -> str:
    redis = "{redisHost: '${REDIS_ADDR}', dialTimeout: 500, readTimeout: 1000, maxRetries: 0}"
    return (
        LISTENERS
        + RUNTIME
        + "hellos: {helloworld: {type: helloworld}}\n"
        + f"state: {{state_demo: {{type: redis, workers: {state_workers}, metadata: {redis}}}}}\n"
        + f"lock: {{lock_demo: {{type: redis, metadata: {redis}}}}}\n"
        + f"sequencer: {{sequencer_demo: {{type: redis, metadata: {redis}}}}}\n"
        + extra
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "layotto.yaml"
    path.write_text(redis_config())
    return path


@pytest.fixture
def sidecar(config_file: Path, redis_server: RedisServer) -> Iterator[Sidecar]:
    with running_sidecar(config_file, {"REDIS_ADDR": redis_server.address}) as running:
        yield running


def assert_clean(load: Load) -> None:
    result = load.stop()
    assert result.failures == [], result.by_code
    assert result.wrong == []
    assert len(set(result.ids)) == len(result.ids), "a sequencer id was handed out twice"
    assert result.calls > 0


def test_three_upgrades_in_a_row_under_load_fail_no_call(sidecar: Sidecar) -> None:
    assert sidecar.process is not None
    supervisor = sidecar.process.pid
    with Load(sidecar.target) as load:
        load.wait_for_calls(200)
        for generation in (2, 3, 4):
            if generation == 3:
                os.kill(supervisor, signal.SIGHUP)  # a signal and the command do the same
                sidecar.wait_for_log(rf"reload: generation {generation} serving")
            else:
                result = sidecar.cli("reload", timeout=120)
                assert result.returncode == 0, result.stderr
                assert f"generation {generation} serving" in result.stdout
            load.wait_for_calls(200)
        assert_clean(load)
    status = sidecar.cli("status").stdout
    assert "generation 4" in status and "api@4" in status and "api@1" not in status
    assert sidecar.process.pid == supervisor and sidecar.process.poll() is None
    # upgraded code runs: the new workers were forked by the new generation's zygote
    assert "zygote@4" in status and "zygote@1" not in status

    workers = [line.split()[0] for line in status.splitlines() if line.startswith("state_demo#")]
    assert len(workers) == 2
    assert all(parent_of(pid_of(sidecar, w)) == pid_of(sidecar, "zygote@4") for w in workers)


def test_reload_with_a_broken_config_keeps_the_old_generation(sidecar: Sidecar) -> None:
    with Load(sidecar.target) as load:
        load.wait_for_calls(100)
        Path(sidecar.config).write_text(redis_config() + "bogus: 1\n")
        result = sidecar.cli("reload", timeout=60)
        assert result.returncode == 1
        assert "bogus" in result.stderr and sidecar.config in result.stderr
        load.wait_for_calls(100)
        assert_clean(load)
    status = sidecar.cli("status").stdout
    assert "generation 1" in status and "last reload: FAILED" in status
    code, ready = http_get(sidecar, "/actuator/health/readiness")
    assert code == 200 and "bogus" in ready["components"]["last_reload"]["details"]["error"]


def test_new_generation_that_cannot_start_is_rolled_back(sidecar: Sidecar) -> None:
    with Load(sidecar.target) as load:
        load.wait_for_calls(100)
        # Valid (bad values are refused before anything changes), but the new
        # sequencer's Redis is not there: a generation that cannot reach its
        # backends must not take traffic (it did, and every call failed).
        dead = f"127.0.0.1:{free_port()}"
        sequencer = (
            "sequencer: {sequencer_demo: {type: redis, biggerThan: {k: 1}, "
            f"metadata: {{redisHost: '{dead}', dialTimeout: 500, maxRetries: 0}}}}}}"
        )
        broken = "\n".join(
            sequencer if line.startswith("sequencer:") else line
            for line in redis_config().splitlines()
        ).replace("request_timeout: 10", "request_timeout: 10, start_timeout: 3")
        Path(sidecar.config).write_text(broken)
        result = sidecar.cli("reload", timeout=120)
        assert result.returncode == 1
        assert "did not start" in result.stderr
        assert f"cannot reach its backend (redis at {dead}" in result.stderr
        load.wait_for_calls(100)
        assert_clean(load)
    status = sidecar.cli("status").stdout
    assert "generation 1" in status
    rows = [line.split()[0] for line in status.splitlines()[3:]]
    assert sorted(rows) == sorted(
        [
            "zygote@1",
            "helloworld#0",
            "state_demo#0",
            "state_demo#1",
            "lock_demo#0",
            "sequencer_demo#0",
            "api@1#0",
            "api@1#1",
        ]
    )


def test_scale_up_and_down_under_load(sidecar: Sidecar) -> None:
    with Load(sidecar.target) as load:
        load.wait_for_calls(100)
        up = sidecar.cli("scale", "state_demo", "4", timeout=120)
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 30
        while True:  # until every replica has served calls (a new one connects first)
            load.wait_for_calls(100)
            rows = [
                line.split()
                for line in sidecar.cli("status").stdout.splitlines()
                if line.startswith("state_demo#")
            ]
            assert len(rows) == 4
            if all(int(row[7]) > 0 for row in rows):
                break
            assert time.monotonic() < deadline, rows
        down = sidecar.cli("scale", "state_demo", "1", timeout=120)
        assert down.returncode == 0, down.stderr
        load.wait_for_calls(100)
        assert_clean(load)
    rows = [
        line for line in sidecar.cli("status").stdout.splitlines() if line.startswith("state_demo#")
    ]
    assert len(rows) == 1


def test_scale_refuses_more_than_one_in_memory_worker(tmp_path: Path) -> None:
    config = tmp_path / "mem.yaml"
    config.write_text(LISTENERS + "state: {state_demo: {type: in-memory}}\n")
    with running_sidecar(config) as sidecar:
        result = sidecar.cli("scale", "state_demo", "2")
        assert result.returncode == 1 and "exactly 1 worker" in result.stderr


def test_killed_worker_under_load_gives_clean_errors_and_no_duplicates(
    sidecar: Sidecar,
) -> None:
    with Load(sidecar.target) as load:
        load.wait_for_calls(100)
        for name in ("sequencer_demo#0", "state_demo#0", "lock_demo#0"):
            mark = sidecar.mark()
            os.kill(pid_of(sidecar, name), signal.SIGKILL)
            sidecar.wait_for_log(rf"{name}: STARTING -> RUNNING", after=mark)
            load.wait_for_calls(100)
        result = load.stop()
    # A call in flight on a killed worker may fail, but only cleanly.
    assert set(result.by_code) <= {"UNAVAILABLE"}, result.failures
    assert all("exited while handling" in f for f in result.failures), result.failures
    assert result.wrong == []
    assert len(set(result.ids)) == len(result.ids)


def first_success_after(target: str, started: float) -> float:
    """Seconds from ``started`` until a call on a new connection succeeded;
    a failure is an assertion error (no new connection may be refused)."""
    with grpc.insecure_channel(target, [("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="x"), timeout=5)
        except grpc.RpcError as error:
            raise AssertionError(f"a new connection failed: {error}") from error
    return time.monotonic() - started


def test_killed_serving_api_under_load_fails_only_the_calls_it_held(sidecar: Sidecar) -> None:
    """kill -9 of the API process that serves: the standby one takes new
    connections at once (it is in the port's reuseport group already).

    What the test can tell apart, by message and time:
    - a refused connection reads "Connection refused" (nothing listened):
      there must be none;
    - what the killed process held fails while it dies (the kernel takes a
      few ms; its pidfd says when it is done): calls in flight on its
      connections, connections it had accepted or queued ("Connection reset
      by peer", "Socket closed", also as "failed to connect"), including a
      caller's immediate retry that landed in its queue;
    - a client whose reconnect was such a queued connection backs off (grpc:
      1 s, +-20 %) and fails its calls at once meanwhile with "failed to
      connect to all addresses; last error: ... reset by peer": those calls
      reach no server. It happened in 6 kills of 40 (docs/design.md).
    It cannot tell which process a call was on. The resume time is measured
    from the death."""
    with Load(sidecar.target) as load:
        load.wait_for_calls(200)
        name, pid = sidecar.serving_api()
        mark = sidecar.mark()
        pidfd = os.pidfd_open(pid)
        try:
            os.kill(pid, signal.SIGKILL)
            assert select.select([pidfd], [], [], 10)[0], "the killed API did not exit"
            died = time.monotonic()
            resumed = first_success_after(sidecar.target, died)
        finally:
            os.close(pidfd)
        sidecar.wait_for_log(rf"{re.escape(name)}: STARTING -> RUNNING", after=mark)
        load.wait_for_calls(200)
        result = load.stop()
    assert [f for f in result.failures if "refused" in f.lower()] == []
    assert set(result.by_code) <= {"UNAVAILABLE"}, result.failures
    failed = list(zip(result.failures, result.failed_at, strict=True))
    # generous bounds: 0.5 s for a client to see its connection die, 2 s for the backoff
    later = [f for f, at in failed if at > died + 0.5]
    assert all("failed to connect to all" in f and "reset by peer" in f for f in later), later
    assert [f for f, at in failed if at > died + 2] == []
    assert result.wrong == []
    # The behaviour asked for is 100 ms; generous for a loaded 2-core machine.
    assert resumed < 0.5, f"serving resumed {resumed * 1000:.0f} ms after the kill"


def test_redis_restart_fails_fast_then_recovers(
    sidecar: Sidecar, redis_server: RedisServer
) -> None:
    redis_server.stop()
    for worker in ("state_demo#0", "state_demo#1"):
        sidecar.wait_for_log(rf"{worker}: component DOWN")
    code, ready = http_get(sidecar, "/actuator/health/readiness")
    assert code == 503 and ready["components"]["state_demo"]["status"] == "DOWN"
    with sidecar.stub() as stub:
        with pytest.raises(Exception) as caught:
            stub.GetState(pb.GetStateRequest(store_name="state_demo", key="k"), timeout=10)
        assert "UNAVAILABLE" in str(caught.value)
        mark = sidecar.mark()
        redis_server.start_again()
        for worker in ("state_demo#0", "state_demo#1"):
            sidecar.wait_for_log(rf"{worker}: component UP", after=mark)
        stub.SaveState(
            pb.SaveStateRequest(
                store_name="state_demo", states=[pb.StateItem(key="k", value=b"back")]
            ),
            timeout=10,
        )
        assert (
            stub.GetState(pb.GetStateRequest(store_name="state_demo", key="k"), timeout=10).data
            == b"back"
        )


def test_sigttin_and_sigttou_add_and_remove_a_worker_of_each_scalable_component(
    sidecar: Sidecar,
) -> None:
    assert sidecar.process is not None
    with Load(sidecar.target) as load:
        load.wait_for_calls(100)
        mark = sidecar.mark()
        sidecar.process.send_signal(signal.SIGTTIN)
        for name, count in (("state_demo", 3), ("lock_demo", 2), ("sequencer_demo", 2)):
            sidecar.wait_for_log(rf"scale: {name} runs {count} worker", after=mark, timeout=60)
        load.wait_for_calls(100)
        mark = sidecar.mark()
        sidecar.process.send_signal(signal.SIGTTOU)
        sidecar.wait_for_log(r"scale: sequencer_demo runs 1 worker", after=mark, timeout=60)
        load.wait_for_calls(100)
        assert_clean(load)
    rows = [line.split()[0] for line in sidecar.cli("status").stdout.splitlines()[3:]]
    assert sum(r.startswith("state_demo#") for r in rows) == 2
    assert sum(r.startswith("lock_demo#") for r in rows) == 1
