"""InvokeService through real gRPC on a real sidecar, to a real local HTTP
service: the call's gRPC metadata reach the service as headers, statuses
come back as codes, the caller's deadline bounds the call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.http_service import HttpService, running_http_service
from tests.redis_server import free_port
from tests.sidecar import running_sidecar

Verb = pb.HTTPExtension.Verb
Stub = runtime_pb2_grpc.RuntimeStub


def config_text(targets: dict[str, object]) -> str:
    return (
        "listeners:\n"
        '  grpc: "127.0.0.1:${LAYOTTO_GRPC_PORT}"\n'
        '  http: "127.0.0.1:${LAYOTTO_HTTP_PORT}"\n'
        "rpcs:\n"
        "  http_rpc:\n"
        "    type: http\n"
        "    workers: 2\n"
        "    metadata:\n"
        f"      targets: '{json.dumps(targets)}'\n"
    )


@pytest.fixture(scope="module")
def service() -> Iterator[HttpService]:
    with running_http_service("s1") as running:
        yield running


@pytest.fixture(scope="module")
def dead() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def stub(
    service: HttpService, dead: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stub]:
    config = Path(tmp_path_factory.mktemp("invoke")) / "invoke.yaml"
    config.write_text(config_text({"echo": service.url, "gone": dead}))
    with (
        running_sidecar(config) as sidecar,
        grpc.insecure_channel(sidecar.target) as channel,
    ):
        yield Stub(channel)


def call(
    method: str, *, id: str = "echo", verb: int = Verb.POST, data: bytes = b"", query: str = ""
) -> pb.InvokeServiceRequest:
    message = pb.CommonInvokeRequest(
        method=method,
        content_type="application/json" if data else "",
        http_extension=pb.HTTPExtension(verb=verb, querystring=query),  # type: ignore[arg-type]
    )
    message.data.value = data
    return pb.InvokeServiceRequest(id=id, message=message)


def test_invoke_carries_body_query_and_metadata(stub: Stub) -> None:
    answer = stub.InvokeService(
        call("orders/1", data=b'{"n": 1}', query="q=2"),
        metadata=[("x-tenant", "t1")],
        timeout=10,
    )
    assert answer.content_type == "application/json"
    got = json.loads(answer.data.value)
    assert (got["verb"], got["path"], got["query"], got["body"]) == (
        "POST",
        "/orders/1",
        "q=2",
        '{"n": 1}',
    )
    assert got["headers"]["x-tenant"] == "t1"
    assert got["headers"]["content-type"] == "application/json"
    assert not any(k.startswith("grpc-") for k in got["headers"])


def test_statuses_and_unknown_ids_are_codes(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.InvokeService(call("status/404", verb=Verb.GET), timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "HTTP 404" in (caught.value.details() or "")
    with pytest.raises(grpc.RpcError) as caught:
        stub.InvokeService(call("x", id="nobody"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_refusing_service_is_unavailable_naming_it(stub: Stub, dead: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.InvokeService(call("x", id="gone"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert dead in (caught.value.details() or "")


def test_the_callers_deadline_bounds_the_call(stub: Stub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.InvokeService(call("slow/2000", verb=Verb.GET), timeout=0.3)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # the worker is free again at once: it gave up too
    answer = stub.InvokeService(call("slow/1", verb=Verb.GET), timeout=5)
    assert json.loads(answer.data.value)["path"] == "/slow/1"
