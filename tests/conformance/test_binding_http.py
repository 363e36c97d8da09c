"""The http output binding (Dapr's bindings.http) against a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from layotto.components.errors import BackendUnavailableError, ComponentError, InvalidRequestError
from layotto.workers.bindings_block import BindingsBlock
from tests.conformance.bindings_support import invoke
from tests.conformance.bindings_support import open_binding as open_typed
from tests.http_server import HttpServer, running_http_server
from tests.redis_server import free_port


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with running_http_server() as running:
        yield running


def open_binding(url: str) -> BindingsBlock:
    return open_typed("http", "hooks", {"url": url})


@pytest.fixture
def binding(server: HttpServer) -> Iterator[BindingsBlock]:
    block = open_binding(server.url + "/api/")
    yield block
    block.close()


@pytest.mark.parametrize(
    ("operation", "method"),
    [
        ("create", "POST"),
        ("post", "POST"),
        ("put", "PUT"),
        ("patch", "PATCH"),
        ("get", "GET"),
        ("delete", "DELETE"),
        ("options", "OPTIONS"),
        ("trace", "TRACE"),
    ],
)
def test_each_operation_is_its_http_method(
    binding: BindingsBlock, server: HttpServer, operation: str, method: str
) -> None:
    answer = invoke(binding, operation, b"", path="items/7")
    assert answer.data == f"ok:{method}".encode()
    assert answer.metadata["statusCode"] == "200"
    assert [(s.method, s.path) for s in server.seen] == [(method, "/api/items/7")]


def test_head_answers_no_body(binding: BindingsBlock, server: HttpServer) -> None:
    answer = invoke(binding, "head")
    assert (answer.data, answer.metadata["statusCode"]) == (b"", "200")
    assert server.seen[0].method == "HEAD"


def test_data_is_the_body_and_other_metadata_are_headers(
    binding: BindingsBlock, server: HttpServer
) -> None:
    answer = invoke(
        binding, "post", b'{"a": 1}', path="/in", **{"Content-Type": "application/json"}
    )
    assert answer.metadata["X-Echo-Method"] == "POST"
    (seen,) = server.seen
    assert (seen.path, seen.body) == ("/api/in", b'{"a": 1}')
    assert seen.headers["Content-Type"] == "application/json"
    assert "path" not in {k.lower() for k in seen.headers}


def test_without_path_the_url_is_used_as_configured(server: HttpServer) -> None:
    block = open_binding(server.url + "/exact?q=1")
    try:
        invoke(block, "get")
    finally:
        block.close()
    assert server.seen[0].path == "/exact?q=1"


@pytest.mark.parametrize("status", [404, 500, 302])
def test_a_status_outside_2xx_is_an_error_naming_it(
    binding: BindingsBlock, server: HttpServer, status: int
) -> None:
    server.answers["/api/x"] = (status, b"nope")
    with pytest.raises(ComponentError, match=f"received status code {status}"):
        invoke(binding, "get", path="x")


def test_other_2xx_are_answers(binding: BindingsBlock, server: HttpServer) -> None:
    server.answers["/api/made"] = (201, b"made")
    answer = invoke(binding, "create", b"x", path="made")
    assert (answer.data, answer.metadata["statusCode"]) == (b"made", "201")


def test_an_unreachable_server_is_unavailable() -> None:
    block = open_binding(f"http://127.0.0.1:{free_port()}/")
    try:
        with pytest.raises(BackendUnavailableError, match=r"http http://127\.0\.0\.1"):
            invoke(block, "get")
        block.ping()  # no health check: the URL is the app's concern
    finally:
        block.close()


@pytest.mark.parametrize("operation", ["list", "GET", "connect"])
def test_an_unsupported_operation_names_the_supported_ones(
    binding: BindingsBlock, server: HttpServer, operation: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        invoke(binding, operation)
    assert str(refused.value) == (
        f"binding hooks does not support operation {operation}. supported operations: "
        "create, get, head, post, put, patch, delete, options, trace"
    )
    assert server.seen == []
