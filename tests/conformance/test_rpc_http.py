"""InvokeService's ``http`` rpc component, through its block, against a real
local HTTP service: verbs, query, headers, content types, status mapping,
round robin, a refusing target, timeouts, kept-alive connections."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from layotto.boundary import envelope
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components.errors import MetadataError
from layotto.components.rpc.settings import parse_targets
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block
from layotto.workers.block_table import open_block
from tests.http_service import HttpService, running_http_service
from tests.redis_server import free_port

Verb = pb.HTTPExtension.Verb


@pytest.fixture(scope="module")
def service() -> Iterator[HttpService]:
    with running_http_service("s1") as running:
        yield running


@pytest.fixture(scope="module")
def other() -> Iterator[HttpService]:
    with running_http_service("s2") as running:
        yield running


def block_for(targets: dict[str, Any], **metadata: str) -> Block:
    spec = WorkerSpec(
        "rpcs", "rpc", "http", {"targets": json.dumps(targets), **metadata}, "app", 0, "ipc:///x"
    )
    return open_block(spec)


@pytest.fixture
def block(service: HttpService) -> Iterator[Block]:
    opened = block_for({"echo": service.url, "prefixed": service.url + "/base/"})
    yield opened
    opened.close()


def request(
    method: str = "hello",
    *,
    id: str = "echo",
    verb: int = Verb.GET,
    query: str = "",
    data: bytes = b"",
    content_type: str = "",
) -> pb.InvokeServiceRequest:
    message = pb.CommonInvokeRequest(
        method=method,
        content_type=content_type,
        http_extension=pb.HTTPExtension(verb=verb, querystring=query),  # type: ignore[arg-type]
    )
    message.data.value = data
    return pb.InvokeServiceRequest(id=id, message=message)


def invoke(
    block: Block,
    call: pb.InvokeServiceRequest,
    metadata: Sequence[tuple[str, str | bytes]] = (),
    within: float = 5.0,
) -> pb.InvokeResponse:
    payload = envelope.wrap(call.SerializeToString(), time.monotonic() + within, metadata)
    return pb.InvokeResponse.FromString(block.handle("InvokeService", payload))


def echo(block: Block, call: pb.InvokeServiceRequest, **kw: Any) -> dict[str, Any]:
    answer = invoke(block, call, **kw)
    assert answer.content_type == "application/json"
    result: dict[str, Any] = json.loads(answer.data.value)
    return result


def failure(block: Block, call: pb.InvokeServiceRequest, **kw: Any) -> CallError:
    with pytest.raises(CallError) as caught:
        invoke(block, call, **kw)
    return caught.value


@pytest.mark.parametrize(
    ("verb", "sent"),
    [
        (Verb.NONE, "POST"),
        (Verb.GET, "GET"),
        (Verb.POST, "POST"),
        (Verb.PUT, "PUT"),
        (Verb.DELETE, "DELETE"),
        (Verb.OPTIONS, "OPTIONS"),
        (Verb.TRACE, "TRACE"),
        (Verb.PATCH, "PATCH"),
    ],
)
def test_verbs(block: Block, verb: int, sent: str) -> None:
    assert echo(block, request(verb=verb))["verb"] == sent


def test_head_answers_no_body(block: Block) -> None:
    answer = invoke(block, request(verb=Verb.HEAD))
    assert answer.data.value == b""
    assert answer.content_type == "application/json"


def test_connect_is_refused(block: Block) -> None:
    assert failure(block, request(verb=Verb.CONNECT)).code == Code.INVALID_ARGUMENT


def test_method_is_the_path_under_the_base_url_with_the_query(block: Block) -> None:
    got = echo(block, request("orders/7", query="a=1&b=x%20y"))
    assert (got["path"], got["query"]) == ("/orders/7", "a=1&b=x%20y")
    got = echo(block, request("/orders", id="prefixed"))
    assert got["path"] == "/base/orders"


def test_body_and_content_types_both_ways(block: Block) -> None:
    got = echo(block, request("x", verb=Verb.POST, data=b'{"a": 1}', content_type="text/x-a"))
    assert (got["body"], got["headers"]["content-type"]) == ('{"a": 1}', "text/x-a")
    raw = invoke(block, request("raw", verb=Verb.PUT, data=b"\x00\xffbin", content_type="b/c"))
    assert (raw.data.value, raw.content_type) == (b"\x00\xffbin", "b/c")


def test_grpc_metadata_become_headers_except_the_transports_own(block: Block) -> None:
    metadata = [
        ("x-request-id", "r1"),
        ("authorization", "Bearer t"),
        (":authority", "127.0.0.1:1"),
        ("grpc-timeout", "5S"),
        ("grpc-accept-encoding", "gzip"),
        ("user-agent", "grpc-python/1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("trace-bin", b"\x00\x01"),
    ]
    headers = echo(block, request(), metadata=metadata)["headers"]
    assert headers["x-request-id"] == "r1"
    assert headers["authorization"] == "Bearer t"
    assert not {"grpc-timeout", "grpc-accept-encoding", "te", "trace-bin"} & set(headers)
    assert headers["user-agent"] != "grpc-python/1"
    assert "content-type" not in headers  # no content_type given: none is sent


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, Code.INVALID_ARGUMENT),
        (401, Code.UNAUTHENTICATED),
        (403, Code.PERMISSION_DENIED),
        (404, Code.NOT_FOUND),
        (409, Code.ABORTED),
        (429, Code.RESOURCE_EXHAUSTED),
        (503, Code.UNAVAILABLE),
        (500, Code.INTERNAL),
        (502, Code.INTERNAL),
        (418, Code.UNKNOWN),
        (302, Code.UNKNOWN),
    ],
)
def test_a_failed_status_is_a_grpc_code_with_status_and_body_start(
    block: Block, status: int, code: Code
) -> None:
    error = failure(block, request(f"status/{status}"))
    assert error.code == code
    assert f"HTTP {status}" in error.message
    assert f"failed with {status}: xxx" in error.message
    assert len(error.message) < 400  # the start of the body only


def test_unknown_service_id_is_not_found(block: Block) -> None:
    error = failure(block, request(id="nobody"))
    assert (error.code, "'nobody'" in error.message) == (Code.NOT_FOUND, True)


def test_targets_take_turns(service: HttpService, other: HttpService) -> None:
    both = block_for({"echo": [service.url, other.url]})
    try:
        servers = [echo(both, request())["server"] for _ in range(6)]
    finally:
        both.close()
    assert sorted(servers) == ["s1"] * 3 + ["s2"] * 3
    assert servers[0] != servers[1]


def test_a_refusing_target_is_skipped_and_idempotent_verbs_go_on(service: HttpService) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    both = block_for({"echo": [dead, service.url]})
    try:
        # the first call finds the dead target first: a GET goes on to the next
        assert echo(both, request())["server"] == "s1"
        # then it is tried last, so every call reaches the live one, POST included
        for _ in range(4):
            assert echo(both, request(verb=Verb.POST))["server"] == "s1"
    finally:
        both.close()


def test_a_refused_post_is_not_sent_elsewhere(service: HttpService) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    both = block_for({"echo": [dead, service.url]})
    try:
        before = service.requests
        error = failure(both, request(verb=Verb.POST))
        assert error.code == Code.UNAVAILABLE
        assert dead in error.message and "POST" in error.message
        assert service.requests == before
    finally:
        both.close()
    only_dead = block_for({"echo": dead})
    try:
        error = failure(only_dead, request())
        assert (error.code, dead in error.message) == (Code.UNAVAILABLE, True)
    finally:
        only_dead.close()


def test_rpc_request_timeout_bounds_a_call(service: HttpService) -> None:
    quick = block_for({"echo": service.url}, rpc_request_timeout="150")
    try:
        started = time.monotonic()
        error = failure(quick, request("slow/1000"))
        assert error.code == Code.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.8
        assert echo(quick, request("slow/10"))["path"] == "/slow/10"
    finally:
        quick.close()


def test_the_callers_deadline_bounds_a_call_when_sooner(block: Block) -> None:
    started = time.monotonic()
    error = failure(block, request("slow/1000"), within=0.15)  # the default is 3000 ms
    assert error.code == Code.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.8


def test_connections_are_kept_alive(service: HttpService) -> None:
    fresh = block_for({"echo": service.url})
    try:
        before = service.connections
        for _ in range(20):
            echo(fresh, request(verb=Verb.POST, data=b"x"))
        assert service.connections - before == 1
    finally:
        fresh.close()


def test_the_calls_of_a_batch_run_concurrently(block: Block) -> None:
    deadline = time.monotonic() + 5
    payload = envelope.wrap(request("slow/300").SerializeToString(), deadline, ())
    started = time.monotonic()
    answers = block.handle_many([("InvokeService", payload)] * 8)
    assert time.monotonic() - started < 1.5  # one after another: 2.4 s
    assert all(isinstance(a, bytes) for a in answers)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '["http://a"]',
        '{"s": []}',
        '{"s": "ftp://a"}',
        '{"s": "http://a:99999"}',
        '{"s": ["http://a", 7]}',
        '{"": "http://a"}',
        '{"s": "http://a/?q=1"}',
    ],
)
def test_targets_refused(text: str) -> None:
    with pytest.raises(MetadataError) as caught:
        parse_targets({"targets": text}, "rpc")
    assert (caught.value.key, caught.value.found) == ("targets", text)
    assert "JSON" in caught.value.expected


def test_targets_accepted() -> None:
    parsed = parse_targets(
        {"targets": '{"a": "http://h:1/", "b": ["https://x", "http://y/p"]}'}, "c"
    )
    assert parsed == {"a": ("http://h:1",), "b": ("https://x", "http://y/p")}
