"""The secrets API through the real sidecar, on both shipped configs:
GetSecret and GetBulkSecret against ``secret_demo`` (configs/secrets.json),
and Layotto's errors."""

from __future__ import annotations

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

Stub = runtime_pb2_grpc.RuntimeStub


def test_get_secret(stub: Stub) -> None:
    answer = stub.GetSecret(pb.GetSecretRequest(store_name="secret_demo", key="demo_key"))
    assert dict(answer.data) == {"demo_key": "demo-value"}
    nested = stub.GetSecret(pb.GetSecretRequest(store_name="secret_demo", key="db:user"))
    assert dict(nested.data) == {"db:user": "demo-user"}


def test_get_bulk_secret(stub: Stub) -> None:
    answer = stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name="secret_demo"))
    assert {k: dict(v.secrets) for k, v in answer.data.items()} == {
        "demo_key": {"demo_key": "demo-value"},
        "db:user": {"db:user": "demo-user"},
        "db:password": {"db:password": "demo-password"},
        "redisPassword": {"redisPassword": ""},
    }


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            pb.GetSecretRequest(store_name="secret_demo", key="nosuchkey"),
            grpc.StatusCode.NOT_FOUND,
            "secret 'nosuchkey' not found in secret store 'secret_demo'",
        ),
        (
            pb.GetSecretRequest(store_name="nosuchstore", key="demo_key"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "failed finding secret store with key nosuchstore",
        ),
        (
            pb.GetSecretRequest(store_name="secret_demo"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "key is empty in secret store secret_demo",
        ),
    ],
    ids=["missing key", "unknown store", "no key"],
)
def test_errors(
    stub: Stub, request_: pb.GetSecretRequest, code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetSecret(request_, timeout=10)
    assert caught.value.code() == code
    assert caught.value.details() == message
