from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from layotto.proto import runtime_pb2_grpc
from tests.redis_server import RedisServer
from tests.sidecar import REPO, Sidecar, running_sidecar


@pytest.fixture(scope="module", params=["standalone", "redis"])
def sidecar(request: pytest.FixtureRequest) -> Iterator[Sidecar]:
    """The real sidecar on each shipped config (one per test module)."""
    env = {}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        env["REDIS_ADDR"] = server.address
    with running_sidecar(REPO / "configs" / f"{request.param}.yaml", env) as running:
        yield running


@pytest.fixture(scope="module")
def stub(sidecar: Sidecar) -> Iterator[runtime_pb2_grpc.RuntimeStub]:
    with grpc.insecure_channel(sidecar.target) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)
