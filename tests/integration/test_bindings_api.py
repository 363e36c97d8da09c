"""InvokeBinding through real gRPC on a real sidecar: the shipped localstorage
binding of standalone.yaml, and one sidecar with all three types (a real
loopback HTTP server, the tests' Redis, a temp directory)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.http_server import HttpServer, running_http_server
from tests.redis_server import RedisServer
from tests.sidecar import REPO, Sidecar, running_sidecar

Stub = runtime_pb2_grpc.RuntimeStub


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServer]:
    with running_http_server() as server:
        yield server


@pytest.fixture(scope="module")
def sidecar(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, http_server: HttpServer
) -> Iterator[tuple[Sidecar, Path]]:
    directory = tmp_path_factory.mktemp("bindings")
    root = directory / "files"
    config = {
        "listeners": {
            "grpc": "127.0.0.1:${LAYOTTO_GRPC_PORT}",
            "http": "127.0.0.1:${LAYOTTO_HTTP_PORT}",
        },
        "runtime": {"api_processes": 1},
        "bindings": {
            "hooks": {"type": "http", "metadata": {"url": http_server.url + "/hooks"}},
            "cache": {
                "type": "redis",
                "metadata": {"redisHost": redis_server.address},
                "workers": 2,
            },
            "files": {"type": "localstorage", "metadata": {"rootPath": str(root)}},
        },
    }
    path = directory / "bindings.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_sidecar(path) as running:
        yield running, root


@pytest.fixture(scope="module")
def stub(sidecar: tuple[Sidecar, Path]) -> Iterator[Stub]:
    with grpc.insecure_channel(sidecar[0].target) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


def invoke(
    stub: Stub, name: str, operation: str, data: bytes = b"", **metadata: str
) -> pb.InvokeBindingResponse:
    request = pb.InvokeBindingRequest(name=name, operation=operation, data=data, metadata=metadata)
    answer: pb.InvokeBindingResponse = stub.InvokeBinding(request, timeout=10)
    return answer


def refused(stub: Stub, name: str, operation: str, **metadata: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        invoke(stub, name, operation, **metadata)
    return info.value


def test_http(stub: Stub, http_server: HttpServer) -> None:
    answer = invoke(stub, "hooks", "create", b"{}", path="orders", **{"X-Trace": "t1"})
    assert (answer.data, answer.metadata["statusCode"]) == (b"ok:POST", "200")
    seen = http_server.seen[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/hooks/orders", b"{}")
    assert seen.headers["X-Trace"] == "t1"
    http_server.answers["/hooks/missing"] = (404, b"")
    error = refused(stub, "hooks", "get", path="missing")
    assert error.code() is grpc.StatusCode.INTERNAL
    assert "received status code 404" in (error.details() or "")


def test_redis(stub: Stub) -> None:
    invoke(stub, "cache", "create", b"v1", key="k", ttlInSeconds="60")
    assert invoke(stub, "cache", "get", key="k").data == b"v1"
    invoke(stub, "cache", "delete", key="k")
    assert invoke(stub, "cache", "get", key="k").data == b""


def test_localstorage(stub: Stub, sidecar: tuple[Sidecar, Path]) -> None:
    root = sidecar[1]
    name = invoke(stub, "files", "create", b"hello").metadata["fileName"]
    assert (root / name).read_bytes() == b"hello"
    invoke(stub, "files", "create", b"x", fileName="b.txt")
    assert sorted(json.loads(invoke(stub, "files", "list").data)) == sorted([name, "b.txt"])
    assert invoke(stub, "files", "get", fileName="b.txt").data == b"x"
    invoke(stub, "files", "delete", fileName="b.txt")
    error = refused(stub, "files", "get", fileName="../bindings.yaml")
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "is refused" in (error.details() or "")


@pytest.mark.parametrize(
    ("name", "operation", "code", "message"),
    [
        ("files", "", "INVALID_ARGUMENT", "operation field is missing from request"),
        (
            "files",
            "post",
            "INVALID_ARGUMENT",
            "binding files does not support operation post. "
            "supported operations: create, get, list, delete",
        ),
        (
            "cache",
            "list",
            "INVALID_ARGUMENT",
            "binding cache does not support operation list. "
            "supported operations: create, get, delete",
        ),
        ("nobody", "get", "INVALID_ARGUMENT", "couldn't find output binding nobody"),
    ],
)
def test_refusals(stub: Stub, name: str, operation: str, code: str, message: str) -> None:
    error = refused(stub, name, operation)
    assert (error.code().name, error.details()) == (code, message)


def test_the_shipped_localstorage_binding() -> None:
    with running_sidecar(REPO / "configs" / "standalone.yaml") as sidecar:
        root = Path(sidecar.env["LAYOTTO_BINDINGS_ROOT"]) / "files_demo"
        with grpc.insecure_channel(sidecar.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            made = invoke(stub, "files_demo", "create", b"hi", fileName="note.txt")
            assert made.metadata["fileName"] == "note.txt"
            assert (root / "note.txt").read_bytes() == b"hi"
            assert invoke(stub, "files_demo", "get", fileName="note.txt").data == b"hi"
        # health: the root is a writable directory
        assert readiness(sidecar)["components"]["files_demo"]["status"] == "UP"
        shutil.rmtree(root)
        down = wait_for_health(sidecar, "DOWN")
        reason = down["components"]["files_demo#0"]["details"]["reason"]
        assert reason == f"localstorage root {root} is not a directory"
        root.mkdir()
        assert wait_for_health(sidecar, "UP")["components"]["files_demo"]["status"] == "UP"


def readiness(sidecar: Sidecar) -> dict[str, Any]:
    url = f"http://127.0.0.1:{sidecar.http_port}/actuator/health/readiness"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
    return answer


def wait_for_health(sidecar: Sidecar, status: str, within: float = 10) -> dict[str, Any]:
    """The readiness body once files_demo's status is ``status``."""
    deadline = time.monotonic() + within
    while True:
        answer = readiness(sidecar)
        if answer["components"]["files_demo"]["status"] == status:
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
