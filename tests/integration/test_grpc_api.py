"""Layotto's gRPC API through the real sidecar, on both shipped configs.

Keys are unique per test, so tests share one sidecar per module safely.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

Stub = runtime_pb2_grpc.RuntimeStub
STORE = "state_demo"


def key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def error_of(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def save(stub: Stub, k: str, value: bytes, etag: str | None = None, **options: Any) -> None:
    item = pb.StateItem(key=k, value=value, options=pb.StateOptions(**options))
    if etag is not None:
        item.etag.value = etag
    stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item]), timeout=10)


def get(stub: Stub, k: str) -> pb.GetStateResponse:
    return stub.GetState(pb.GetStateRequest(store_name=STORE, key=k), timeout=10)


# -- hello -----------------------------------------------------------------------


def test_say_hello_greets_and_echoes_data(stub: Stub) -> None:
    data = any_pb2.Any(type_url="type.googleapis.com/x", value=b"payload")
    answer = stub.SayHello(
        pb.SayHelloRequest(service_name="helloworld", name="layotto", data=data), timeout=10
    )
    assert answer.hello == "greeting, layotto"
    assert answer.data == data


def test_say_hello_unknown_service(stub: Stub) -> None:
    error = error_of(lambda: stub.SayHello(pb.SayHelloRequest(service_name="nope"), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in (error.details() or "")


# -- state -----------------------------------------------------------------------


def test_state_round_trip_with_versions(stub: Stub) -> None:
    k = key()
    assert get(stub, k).data == b"" and get(stub, k).etag == ""
    save(stub, k, b"one", etag="0")  # Layotto's SDKs send "0" for "no etag"
    first = get(stub, k)
    assert first.data == b"one" and first.etag
    save(stub, k, b"two", etag=first.etag)
    second = get(stub, k)
    assert second.data == b"two" and second.etag != first.etag
    error = error_of(lambda: save(stub, k, b"three", etag=first.etag))
    assert error.code() == grpc.StatusCode.ABORTED
    assert get(stub, k).data == b"two"


def test_state_invalid_etag_is_invalid_argument(stub: Stub) -> None:
    k = key()
    save(stub, k, b"v")
    error = error_of(lambda: save(stub, k, b"w", etag="not-a-version"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_state_first_write(stub: Stub) -> None:
    k = key()
    first_write = pb.StateOptions.CONCURRENCY_FIRST_WRITE
    save(stub, k, b"a", concurrency=first_write)
    error = error_of(lambda: save(stub, k, b"b", concurrency=first_write))
    assert error.code() == grpc.StatusCode.ABORTED
    assert get(stub, k).data == b"a"


def test_state_bulk_save_partial_failure(stub: Stub) -> None:
    good, bad = key(), key()
    save(stub, good, b"g1")
    save(stub, bad, b"b1")
    etag_good = get(stub, good).etag
    request = pb.SaveStateRequest(
        store_name=STORE,
        states=[
            pb.StateItem(key=good, value=b"g2", etag=pb.Etag(value=etag_good)),
            pb.StateItem(key=bad, value=b"b2", etag=pb.Etag(value="999999")),
        ],
    )
    error = error_of(lambda: stub.SaveState(request, timeout=10))
    assert error.code() == grpc.StatusCode.ABORTED
    assert bad in (error.details() or "")
    assert get(stub, good).data == b"g2"
    assert get(stub, bad).data == b"b1"


def test_state_bulk_get_reports_missing_keys_as_empty(stub: Stub) -> None:
    present, missing = key(), key()
    save(stub, present, b"here")
    answer = stub.GetBulkState(
        pb.GetBulkStateRequest(store_name=STORE, keys=[present, missing]), timeout=10
    )
    items = {item.key: item for item in answer.items}
    assert items[present].data == b"here" and items[present].etag
    assert items[missing].data == b"" and items[missing].etag == ""
    assert not items[present].error and not items[missing].error


def test_state_delete_and_bulk_delete(stub: Stub) -> None:
    a, b, never = key(), key(), key()
    save(stub, a, b"1")
    save(stub, b, b"2")
    stub.DeleteState(pb.DeleteStateRequest(store_name=STORE, key=never), timeout=10)
    wrong = pb.DeleteStateRequest(store_name=STORE, key=a, etag=pb.Etag(value="999999"))
    assert error_of(lambda: stub.DeleteState(wrong, timeout=10)).code() == grpc.StatusCode.ABORTED
    stub.DeleteBulkState(
        pb.DeleteBulkStateRequest(
            store_name=STORE,
            states=[
                pb.StateItem(key=a, etag=pb.Etag(value=get(stub, a).etag)),
                pb.StateItem(key=b),
            ],
        ),
        timeout=10,
    )
    assert get(stub, a).data == b"" and get(stub, b).data == b""


def test_state_transaction_applies_in_order(stub: Stub) -> None:
    k1, k2, k3 = key(), key(), key()
    save(stub, k1, b"old")
    ops = [
        pb.TransactionalStateOperation(operationType="delete", request=pb.StateItem(key=k1)),
        pb.TransactionalStateOperation(
            operationType="upsert", request=pb.StateItem(key=k2, value=b"x")
        ),
        pb.TransactionalStateOperation(operationType="delete", request=pb.StateItem(key=k2)),
        pb.TransactionalStateOperation(
            operationType="upsert", request=pb.StateItem(key=k3, value=b"value3")
        ),
    ]
    stub.ExecuteStateTransaction(
        pb.ExecuteStateTransactionRequest(storeName=STORE, operations=ops), timeout=10
    )
    assert (get(stub, k1).data, get(stub, k2).data, get(stub, k3).data) == (b"", b"", b"value3")


def test_state_transaction_is_all_or_nothing(stub: Stub) -> None:
    k1, k2 = key(), key()
    ops = [
        pb.TransactionalStateOperation(
            operationType="upsert", request=pb.StateItem(key=k1, value=b"a")
        ),
        pb.TransactionalStateOperation(
            operationType="upsert",
            request=pb.StateItem(key=k2, value=b"b", etag=pb.Etag(value="42")),
        ),
    ]
    request = pb.ExecuteStateTransactionRequest(storeName=STORE, operations=ops)
    assert (
        error_of(lambda: stub.ExecuteStateTransaction(request, timeout=10)).code()
        == grpc.StatusCode.ABORTED
    )
    assert get(stub, k1).data == b""


def test_state_transaction_rejects_unknown_operation(stub: Stub) -> None:
    ops = [
        pb.TransactionalStateOperation(
            operationType="merge", request=pb.StateItem(key=key(), value=b"a")
        )
    ]
    request = pb.ExecuteStateTransactionRequest(storeName=STORE, operations=ops)
    error = error_of(lambda: stub.ExecuteStateTransaction(request, timeout=10))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "merge" in (error.details() or "")


def test_state_ttl(stub: Stub) -> None:
    k = key()
    item = pb.StateItem(key=k, value=b"brief", metadata={"ttlInSeconds": "1"})
    stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item]), timeout=10)
    assert get(stub, k).data == b"brief"
    assert "ttlExpireTime" in get(stub, k).metadata
    deadline = time.monotonic() + 5
    while get(stub, k).data and time.monotonic() < deadline:
        time.sleep(0.1)  # polling an expiry: the condition itself is time
    assert get(stub, k).data == b""
    bad = pb.StateItem(key=k, value=b"x", metadata={"ttlInSeconds": "soon"})
    error = error_of(
        lambda: stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[bad]), timeout=10)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("request_factory", "message"),
    [
        (
            lambda: pb.GetStateRequest(store_name="missing", key="k"),
            "state store missing is not found",
        ),
        (lambda: pb.GetStateRequest(store_name=STORE, key=""), "key is empty"),
        (lambda: pb.GetStateRequest(store_name=STORE, key="a||b"), "||"),
    ],
)
def test_state_bad_requests(stub: Stub, request_factory: Callable[[], Any], message: str) -> None:
    error = error_of(lambda: stub.GetState(request_factory(), timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.details() or "")


# -- lock ------------------------------------------------------------------------


def test_lock_scenario_of_layottos_integration_test(stub: Stub) -> None:
    resource = key()

    def try_lock(owner: str) -> bool:
        answer = stub.TryLock(
            pb.TryLockRequest(
                store_name="lock_demo", resource_id=resource, lock_owner=owner, expire=100
            ),
            timeout=10,
        )
        return bool(answer.success)

    def unlock(owner: str) -> int:
        return int(
            stub.Unlock(
                pb.UnlockRequest(store_name="lock_demo", resource_id=resource, lock_owner=owner),
                timeout=10,
            ).status
        )

    assert try_lock("owner1")
    assert not try_lock("owner2")
    assert not try_lock("owner1")  # not re-entrant
    assert unlock("owner2") == pb.UnlockResponse.LOCK_BELONG_TO_OTHERS
    assert unlock("owner1") == pb.UnlockResponse.SUCCESS
    assert unlock("owner1") == pb.UnlockResponse.LOCK_UNEXIST
    assert try_lock("owner2")
    assert unlock("owner2") == pb.UnlockResponse.SUCCESS


def test_lock_keep_alive_extends_only_the_owners_lock(stub: Stub) -> None:
    resource = key()
    stub.TryLock(
        pb.TryLockRequest(store_name="lock_demo", resource_id=resource, lock_owner="me", expire=1),
        timeout=10,
    )

    def keep_alive(owner: str) -> int:
        return int(
            stub.LockKeepAlive(
                pb.LockKeepAliveRequest(
                    store_name="lock_demo", resource_id=resource, lock_owner=owner, expire=30
                ),
                timeout=10,
            ).status
        )

    assert keep_alive("other") == pb.LockKeepAliveResponse.LOCK_BELONG_TO_OTHERS
    assert keep_alive("me") == pb.LockKeepAliveResponse.SUCCESS
    time.sleep(1.5)  # past the original 1 s expiry: the extension is what is tested
    answer = stub.TryLock(
        pb.TryLockRequest(
            store_name="lock_demo", resource_id=resource, lock_owner="other", expire=1
        ),
        timeout=10,
    )
    assert not answer.success


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resource_id": "", "lock_owner": "o", "expire": 1}, "ResourceId is empty"),
        ({"resource_id": "r", "lock_owner": "", "expire": 1}, "LockOwner is empty"),
        ({"resource_id": "r", "lock_owner": "o", "expire": 0}, "Expire is not positive"),
    ],
)
def test_lock_validation(stub: Stub, fields: dict[str, Any], message: str) -> None:
    error = error_of(
        lambda: stub.TryLock(pb.TryLockRequest(store_name="lock_demo", **fields), timeout=10)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.details() or "")


# -- sequencer -------------------------------------------------------------------


@pytest.mark.parametrize("mode", [pb.SequencerOptions.WEAK, pb.SequencerOptions.STRONG])
def test_sequencer_counts_from_one(stub: Stub, mode: int) -> None:
    k = key()
    ids = [
        stub.GetNextId(
            pb.GetNextIdRequest(
                store_name="sequencer_demo", key=k, options=pb.SequencerOptions(increment=mode)
            ),
            timeout=10,
        ).next_id
        for _ in range(10)
    ]
    assert ids == list(range(1, 11))


def test_sequencer_requires_a_key(stub: Stub) -> None:
    error = error_of(
        lambda: stub.GetNextId(pb.GetNextIdRequest(store_name="sequencer_demo"), timeout=10)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Key is empty in sequencer store sequencer_demo" in (error.details() or "")


# -- not yet implemented ---------------------------------------------------------


def test_unimplemented_unary_rpc_names_itself(stub: Stub) -> None:
    error = error_of(lambda: stub.DelFile(pb.DelFileRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "DelFile" in (error.details() or "")


def test_unimplemented_streaming_rpc_names_itself(stub: Stub) -> None:
    responses = stub.GetFile(pb.GetFileRequest(), timeout=10)
    error = error_of(lambda: list(responses))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "GetFile" in (error.details() or "")
