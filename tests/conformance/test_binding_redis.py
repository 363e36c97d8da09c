"""The redis output binding (Dapr's bindings.redis) against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from layotto.components.errors import BackendUnavailableError, InvalidRequestError
from layotto.proto import runtime_pb2 as pb
from layotto.workers.bindings_block import BindingsBlock
from tests.conformance.bindings_support import invoke
from tests.conformance.bindings_support import open_binding as open_typed
from tests.redis_server import free_port

pytestmark = pytest.mark.redis


def open_binding(redis_host: str) -> BindingsBlock:
    metadata = {"redisHost": redis_host, "maxRetries": "0", "dialTimeout": "500"}
    return open_typed("redis", "cache", metadata)


@pytest.fixture
def binding(redis_addr: str) -> Iterator[BindingsBlock]:
    block = open_binding(redis_addr)
    yield block
    block.close()


def test_create_get_delete(binding: BindingsBlock, redis_client: redis.Redis) -> None:
    assert invoke(binding, "create", b"\x00value", key="k1") == pb.InvokeBindingResponse()
    assert redis_client.get("k1") == b"\x00value"
    assert redis_client.ttl("k1") == -1  # no ttlInSeconds: kept
    assert invoke(binding, "get", key="k1").data == b"\x00value"
    invoke(binding, "create", b"new", key="k1")
    assert invoke(binding, "get", key="k1").data == b"new"
    invoke(binding, "delete", key="k1")
    assert redis_client.exists("k1") == 0
    assert invoke(binding, "get", key="k1").data == b""
    invoke(binding, "delete", key="k1")  # deleting what is gone is no error


def test_ttl_in_seconds(binding: BindingsBlock, redis_client: redis.Redis) -> None:
    invoke(binding, "create", b"v", key="k2", ttlInSeconds="100")
    assert 0 < redis_client.ttl("k2") <= 100


@pytest.mark.parametrize("ttl", ["0", "-3", "soon"])
def test_a_bad_ttl_is_refused(binding: BindingsBlock, redis_client: redis.Redis, ttl: str) -> None:
    with pytest.raises(InvalidRequestError, match="ttlInSeconds must be an integer > 0"):
        invoke(binding, "create", b"v", key="k3", ttlInSeconds=ttl)
    assert redis_client.exists("k3") == 0


@pytest.mark.parametrize("operation", ["create", "get", "delete"])
def test_key_is_required(binding: BindingsBlock, operation: str) -> None:
    with pytest.raises(
        InvalidRequestError, match=f"metadata key is required for operation {operation}"
    ):
        invoke(binding, operation, b"v")


def test_an_unsupported_operation_names_the_supported_ones(binding: BindingsBlock) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        invoke(binding, "list", key="k")
    assert str(refused.value) == (
        "binding cache does not support operation list. supported operations: create, get, delete"
    )


def test_ping_and_an_unreachable_redis() -> None:
    block = open_binding(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(BackendUnavailableError, match=r"redis at 127\.0\.0\.1"):
            block.ping()
        with pytest.raises(BackendUnavailableError):
            invoke(block, "get", key="k")
    finally:
        block.close()


def test_ping(binding: BindingsBlock) -> None:
    binding.ping()
