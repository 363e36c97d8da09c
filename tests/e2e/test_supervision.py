"""The real `layotto` command: start, status, crash recovery, stop, no orphans."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from layotto.components import keys
from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.redis_server import RedisServer, free_port
from tests.sidecar import LAYOTTO, REPO, Sidecar, running_sidecar

STANDALONE = REPO / "configs" / "standalone.yaml"


def http_get(sidecar: Sidecar, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{sidecar.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def pid_of(sidecar: Sidecar, name: str) -> int:
    for line in sidecar.cli("status").stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return int(cells[2])
    raise AssertionError(f"{name} not in status")


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        if alive:
            time.sleep(0.05)
    return alive


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def hello(sidecar: Sidecar) -> str:
    with sidecar.stub() as stub:
        answer = stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="x"), timeout=10)
    return str(answer.hello)


def test_status_actuator_and_stop() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        status = sidecar.cli("status")
        assert status.returncode == 0, status.stderr
        assert "READY" in status.stdout
        for name in ("api@1", "helloworld#0", "state_demo#0", "lock_demo#0", "sequencer_demo#0"):
            assert name in status.stdout
        assert "RUNNING" in status.stdout

        code, live = http_get(sidecar, "/actuator/health/liveness")
        assert code == 200 and live["status"] == "UP"
        code, ready = http_get(sidecar, "/actuator/health/readiness")
        assert code == 200 and ready["status"] == "UP"
        assert ready["components"]["state_demo"]["status"] == "UP"
        assert ready["components"]["state_demo#0"]["status"] == "UP"
        code, info = http_get(sidecar, "/actuator/info")
        assert code == 200 and info["app"]["name"] == "layotto-py" and info["app"]["version"]
        assert http_get(sidecar, "/actuator/nothing")[0] == 404

        children = sidecar.children()
        assert len(children) == 11  # zygote, two API processes, eight workers
        stopped = sidecar.cli("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert sidecar.process is not None
        assert sidecar.process.wait(timeout=30) == 0
        assert wait_gone(children) == []
        assert sidecar.cli("status").returncode == 3
        run_dirs = [line for line in sidecar.lines if "run dir" in line]
        assert run_dirs and not os.path.exists(run_dirs[0].rsplit("run dir ", 1)[1])


def test_killed_worker_is_replaced_and_calls_recover() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        assert hello(sidecar) == "greeting, x"
        victim = pid_of(sidecar, "helloworld#0")
        mark = sidecar.mark()
        os.kill(victim, signal.SIGKILL)
        sidecar.wait_for_log(r"helloworld#0: RUNNING -> BACKOFF \(killed by SIGKILL\)", after=mark)
        # an idempotent call made while the worker restarts waits for it
        assert hello(sidecar) == "greeting, x"
        sidecar.wait_for_log(r"helloworld#0: STARTING -> RUNNING", after=mark)
        assert pid_of(sidecar, "helloworld#0") != victim
        row = next(
            line
            for line in sidecar.cli("status").stdout.splitlines()
            if line.startswith("helloworld#0")
        )
        assert row.split()[5] == "1"  # restarts


def test_killed_api_process_is_replaced_and_clients_reconnect() -> None:
    with running_sidecar(STANDALONE) as sidecar, grpc.insecure_channel(sidecar.target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        request = pb.SayHelloRequest(service_name="helloworld", name="x")
        assert stub.SayHello(request, timeout=10).hello == "greeting, x"
        mark = sidecar.mark()
        name, pid = sidecar.serving_api()
        os.kill(pid, signal.SIGKILL)
        sidecar.wait_for_log(rf"{re.escape(name)}: STARTING -> RUNNING", after=mark)
        # same channel, no intervention: wait_for_ready rides over the reconnect
        answer = stub.SayHello(request, timeout=10, wait_for_ready=True)
        assert answer.hello == "greeting, x"


def test_sigterm_stops_everything_with_status_zero() -> None:
    sidecar = Sidecar(STANDALONE)
    try:
        sidecar.start()
        children = sidecar.children()
        assert sidecar.stop() == 0
        assert wait_gone(children) == []
    finally:
        sidecar.kill()


def test_killed_supervisor_leaves_no_orphans() -> None:
    sidecar = Sidecar(STANDALONE)
    try:
        sidecar.start()
        children = sidecar.children()
        assert children
        sidecar.kill()  # SIGKILL: no chance to clean up
        assert wait_gone(children) == []
    finally:
        sidecar.kill()


def test_second_start_on_the_same_config_is_refused() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        second = subprocess.run(
            [LAYOTTO, "start", "-c", sidecar.config],
            env=sidecar.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr
        assert hello(sidecar) == "greeting, x"


def _listening_inode(port: int) -> str:
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _fd_targets(pid: int) -> set[str]:
    fds = f"/proc/{pid}/fd"
    return {os.readlink(os.path.join(fds, fd)) for fd in os.listdir(fds)}


def test_children_hold_none_of_the_supervisors_sockets_or_files() -> None:
    # The first zygote is forked by the supervisor itself: it must not keep
    # the HTTP listener, the control socket or the pid file (a dead
    # supervisor's port would stay taken, its lock held).
    with running_sidecar(STANDALONE) as sidecar:
        assert sidecar.process is not None
        http = f"socket:[{_listening_inode(sidecar.http_port)}]"
        assert http in _fd_targets(sidecar.process.pid)
        for name in ("zygote@1", "api@1#0", "api@1#1", "state_demo#0", "pub_subs_demo#0"):
            held = _fd_targets(pid_of(sidecar, name))
            assert http not in held, name
            assert not any(t.endswith("supervisor.pid") for t in held), name


def test_a_refused_start_leaves_no_process_behind() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        second = subprocess.Popen(
            [LAYOTTO, "start", "-c", sidecar.config],
            env=sidecar.env,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its session id is its pid: find its descendants
        )
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "already running" in err
        left = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        session = int(f.read().rsplit(")", 1)[1].split()[3])
                except (FileNotFoundError, ProcessLookupError):
                    continue
                if session == second.pid:
                    left.append(int(entry))
        assert wait_gone(left) == []


def test_grpc_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        sidecar = Sidecar(STANDALONE, {"LAYOTTO_GRPC_PORT": str(taken.getsockname()[1])})
        result = subprocess.run(
            [LAYOTTO, "start", "-c", sidecar.config],
            env=sidecar.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot use gRPC address" in result.stderr


def test_check_reports_every_problem(tmp_path: Path) -> None:
    good = subprocess.run(
        [LAYOTTO, "check", "-c", str(STANDALONE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert good.returncode == 0 and "OK" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "listeners: {grpc: '127.0.0.1:1', http: '127.0.0.1:2'}\n"
        "state: {s: {type: nosuch, workers: 0}}\nbogus: 1\n"
    )
    result = subprocess.run(
        [LAYOTTO, "check", "-c", str(bad)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "state.s.type" in result.stderr
    assert "state.s.workers" in result.stderr
    assert "bogus" in result.stderr


def test_component_that_cannot_start_is_fatal_and_not_ready(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A valid config (bad values are refused by the check) and a reachable
    # Redis, which refuses to raise the biggerThan floor: the key holds text.
    # Restarting cannot fix that (an unreachable Redis, which can come back,
    # is waited for instead: tests/e2e/test_recovery.py).
    stored = keys.sequencer_rules("none", "broken", "").stored("k")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.set(stored, "not a number")
    client.close()
    config = tmp_path / "broken.yaml"
    config.write_text(
        "listeners:\n"
        "  grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}'\n"
        "  http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'\n"
        "hellos: {helloworld: {type: helloworld}}\n"
        "sequencer: {broken: {type: redis, biggerThan: {k: 1}, "
        f"metadata: {{redisHost: '{redis_server.address}', keyPrefix: none}}}}}}\n"
    )
    sidecar = Sidecar(config)
    try:
        sidecar.launch()
        sidecar.wait_for_log(r"broken#0: STARTING -> FATAL")
        sidecar.wait_for_log(r"api@1#0: STARTING -> RUNNING")
        code, ready = http_get(sidecar, "/actuator/health/readiness")
        assert code == 503 and ready["status"] == "DOWN"
        assert redis_server.address in ready["components"]["broken"]["details"]["reason"]
        assert http_get(sidecar, "/actuator/health/liveness")[0] == 503
        # the rest of the sidecar keeps serving
        assert hello(sidecar) == "greeting, x"
        status = sidecar.cli("status")
        assert "FATAL" in status.stdout and status.returncode == 1
    finally:
        sidecar.stop()
        sidecar.kill()


@pytest.mark.usefixtures("redis_server")
def test_redis_down_gives_unavailable_and_not_ready() -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_sidecar(REPO / "configs" / "redis.yaml", {"REDIS_ADDR": dead}) as sidecar:
        code, ready = http_get(sidecar, "/actuator/health/readiness")
        assert code == 503
        assert ready["components"]["state_demo"]["status"] == "DOWN"
        with sidecar.stub() as stub, pytest.raises(grpc.RpcError) as caught:
            stub.GetState(pb.GetStateRequest(store_name="state_demo", key="k"), timeout=20)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert dead in (caught.value.details() or "")


def test_sighup_upgrade_keeps_in_memory_data() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        assert sidecar.process is not None
        with sidecar.stub() as stub:
            stub.SaveState(
                pb.SaveStateRequest(
                    store_name="state_demo",
                    states=[pb.StateItem(key="kept", value=b"across the upgrade")],
                ),
                timeout=10,
            )
            mark = sidecar.mark()
            sidecar.process.send_signal(signal.SIGHUP)
            sidecar.wait_for_log(r"reload: generation 2 serving", after=mark, timeout=60)
            got = stub.GetState(
                pb.GetStateRequest(store_name="state_demo", key="kept"),
                timeout=10,
                wait_for_ready=True,
            )
        assert got.data == b"across the upgrade"
        assert hello(sidecar) == "greeting, x"
        status = sidecar.cli("status").stdout
        assert "api@2" in status and "helloworld#1" in status  # replaced
        assert "state_demo#0" in status  # in-memory, unchanged: kept


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_workers_and_api_are_forked_by_the_zygote_and_survive_its_death() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        zygote = pid_of(sidecar, "zygote@1")
        workers = [pid_of(sidecar, n) for n in ("helloworld#0", "state_demo#0", "lock_demo#0")]
        assert all(parent_of(w) == zygote for w in workers)
        assert parent_of(pid_of(sidecar, "api@1#0")) == zygote
        assert parent_of(pid_of(sidecar, "api@1#1")) == zygote
        mark = sidecar.mark()
        os.kill(zygote, signal.SIGKILL)
        sidecar.wait_for_log(r"zygote@1: STARTING -> RUNNING", after=mark)
        assert hello(sidecar) == "greeting, x"  # its workers kept serving
        assert all(_alive(w) for w in workers)
        mark = sidecar.mark()
        os.kill(pid_of(sidecar, "helloworld#0"), signal.SIGKILL)
        sidecar.wait_for_log(r"helloworld#0: STARTING -> RUNNING", after=mark)
        assert parent_of(pid_of(sidecar, "helloworld#0")) == pid_of(sidecar, "zygote@1")
        assert hello(sidecar) == "greeting, x"


def test_workers_orphaned_by_an_old_zygote_are_adopted_by_the_supervisor() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        assert sidecar.process is not None
        mark = sidecar.mark()
        sidecar.process.send_signal(signal.SIGHUP)
        sidecar.wait_for_log(r"reload: generation 2 serving", after=mark, timeout=60)
        kept = pid_of(sidecar, "state_demo#0")  # in-memory: kept across the upgrade
        assert parent_of(kept) == sidecar.process.pid  # zygote@1 is gone
        mark = sidecar.mark()
        os.kill(kept, signal.SIGKILL)
        # its real exit status is known (it is reaped by the supervisor)
        sidecar.wait_for_log(r"state_demo#0: RUNNING -> BACKOFF \(killed by SIGKILL\)", after=mark)
        sidecar.wait_for_log(r"state_demo#0: STARTING -> RUNNING", after=mark)


def test_a_run_dir_too_long_for_unix_sockets_is_a_clear_error(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 90)
    config = tmp_path / "long.yaml"
    config.write_text(
        "listeners:\n"
        "  grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}'\n"
        "  http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'\n"
        f"runtime: {{run_dir: '{long_dir}'}}\n"
        "hellos: {helloworld: {type: helloworld}}\n"
    )
    sidecar = Sidecar(config)
    result = subprocess.run(
        [LAYOTTO, "start", "-c", str(config)],
        env=sidecar.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "longer than 107 bytes" in result.stderr and "runtime.run_dir" in result.stderr
