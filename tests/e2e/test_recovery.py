"""The sidecar recovers from what recovers by itself: a backend that comes later."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from tests.e2e.test_supervision import http_get
from tests.e2e.test_upgrade import LISTENERS, RUNTIME
from tests.redis_server import free_port, running_redis_on
from tests.sidecar import running_sidecar

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

SEQUENCER = (
    "sequencer: {sequencer_demo: {type: redis, biggerThan: {orders: 1000}, "
    "metadata: {redisHost: '127.0.0.1:${REDIS_PORT}', dialTimeout: 300, maxRetries: 0}}}\n"
)


def next_id(stub: object, timeout: float = 5) -> int:
    request = pb.GetNextIdRequest(store_name="sequencer_demo", key="orders")
    return int(stub.GetNextId(request, timeout=timeout).next_id)  # type: ignore[attr-defined]


def test_a_backend_needed_at_start_is_waited_for_not_fatal(tmp_path: Path) -> None:
    """A Redis sequencer with biggerThan needs Redis to start. Started before
    Redis, the sidecar stays alive (liveness UP), says which component is DOWN
    and why, fails calls fast with UNAVAILABLE, and serves once Redis is up."""
    config = tmp_path / "layotto.yaml"
    config.write_text(LISTENERS + RUNTIME + SEQUENCER)
    port = free_port()
    with running_sidecar(config, {"REDIS_PORT": str(port)}) as sidecar:
        sidecar.wait_for_log(r"sequencer_demo#0: component DOWN")
        code, ready = http_get(sidecar, "/actuator/health/readiness")
        assert code == 503 and ready["components"]["sequencer_demo"]["status"] == "DOWN"
        assert http_get(sidecar, "/actuator/health/liveness")[0] == 200
        with sidecar.stub() as stub:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                next_id(stub, timeout=8)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "backend" in str(caught.value.details())
            assert time.monotonic() - started < 4  # not a wait for the deadline
            mark = sidecar.mark()
            with running_redis_on(port):
                sidecar.wait_for_log(r"sequencer_demo#0: component UP", after=mark)
                assert http_get(sidecar, "/actuator/health/readiness")[0] == 200
                assert next_id(stub) > 1000  # the floor was applied once Redis came
        assert "FATAL" not in "\n".join(sidecar.lines)


def test_no_child_carries_the_config_in_its_environment(tmp_path: Path) -> None:
    """A child's spec holds the config, passwords included: it travels on the
    child's control link, never in its environment or command line (readable
    in /proc by anyone allowed to look at the process)."""
    secret = "s3cret-in-the-config"
    config = tmp_path / "layotto.yaml"
    config.write_text(
        LISTENERS
        + RUNTIME
        + "hellos: {helloworld: {type: helloworld}}\n"
        + "state: {state_demo: {type: redis, metadata: "
        + f"{{redisHost: '127.0.0.1:{free_port()}', redisPassword: '{secret}'}}}}}}\n"
    )
    # every role exec'd, so each reads its spec as an exec'd process does
    with running_sidecar(config, {"LAYOTTO_EXEC_ROLES": "api,worker,zygote"}) as sidecar:
        children = sidecar.children()
        assert len(children) >= 4  # zygote, API, two workers
        for pid in children:
            for view in ("environ", "cmdline"):
                assert secret.encode() not in Path(f"/proc/{pid}/{view}").read_bytes(), view
        with sidecar.stub() as stub:
            hello = stub.SayHello(pb.SayHelloRequest(service_name="helloworld", name="x"))
            assert hello.hello == "greeting, x"
