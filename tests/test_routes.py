"""Routing and Layotto's pre-routing checks (its validation order, messages and key prefixes)."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from layotto.api import routes
from layotto.api.routes import Components, Route
from layotto.boundary.frames import METHODS
from layotto.boundary.repeats import Repeatable
from layotto.boundary.rpcs import UNARY
from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb

COMPONENTS: Components = {
    "hellos": frozenset({"quick_start_demo"}),
    "state": frozenset({"redis", "in-memory"}),
    "lock": frozenset({"redis"}),
    "sequencer": frozenset({"redis"}),
    "secret_store": frozenset({"secret_demo"}),
}


def route(name: str, message: Message, components: Components = COMPONENTS) -> Route:
    return routes.route(UNARY[name], message.SerializeToString(), components)


def failure(name: str, message: Message | bytes, components: Components = COMPONENTS) -> CallError:
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    with pytest.raises(CallError) as info:
        routes.route(UNARY[name], payload, components)
    return info.value


def test_every_worker_method_has_a_route_and_back() -> None:
    subscription_calls = {"OpenSubscription", "PollEvents", "EventProcessed", "CloseSubscription"}
    assert set(UNARY) == set(METHODS) - subscription_calls
    for name, rpc in UNARY.items():
        assert rpc.name == name


# -- not configured ---------------------------------------------------------------

VALID: dict[str, Message] = {
    "SayHello": pb.SayHelloRequest(service_name="quick_start_demo", name="world"),
    "GetState": pb.GetStateRequest(store_name="redis", key="k"),
    "GetBulkState": pb.GetBulkStateRequest(store_name="redis", keys=["a", "b"]),
    "SaveState": pb.SaveStateRequest(
        store_name="redis", states=[pb.StateItem(key="a", value=b"1")]
    ),
    "DeleteState": pb.DeleteStateRequest(store_name="redis", key="k"),
    "DeleteBulkState": pb.DeleteBulkStateRequest(
        store_name="redis", states=[pb.StateItem(key="a")]
    ),
    "ExecuteStateTransaction": pb.ExecuteStateTransactionRequest(
        storeName="redis",
        operations=[
            pb.TransactionalStateOperation(
                operationType="upsert", request=pb.StateItem(key="a", value=b"1")
            )
        ],
    ),
    "TryLock": pb.TryLockRequest(store_name="redis", resource_id="r", lock_owner="o", expire=10),
    "Unlock": pb.UnlockRequest(store_name="redis", resource_id="r", lock_owner="o"),
    "LockKeepAlive": pb.LockKeepAliveRequest(
        store_name="redis", resource_id="r", lock_owner="o", expire=10
    ),
    "GetNextId": pb.GetNextIdRequest(store_name="redis", key="order"),
    "GetSecret": pb.GetSecretRequest(store_name="secret_demo", key="k"),
    "GetBulkSecret": pb.GetBulkSecretRequest(store_name="secret_demo"),
}

NOT_CONFIGURED = {
    "state": "state store is not configured",
    "lock": "lock store is not configured",
    "sequencer": "Sequencer store is not configured",
    "hellos": "hello service is not configured",
    "secret_store": "secret store is not configured",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_requests_route_to_their_component(name: str) -> None:
    assert route(name, VALID[name]).component in COMPONENTS[UNARY[name].kind]


@pytest.mark.parametrize("name", sorted(VALID))
def test_no_component_of_the_kind_is_failed_precondition(name: str) -> None:
    kind = UNARY[name].kind
    others = {k: v for k, v in COMPONENTS.items() if k != kind}
    for components in (others, {**others, kind: frozenset()}):
        error = failure(name, VALID[name], components)
        assert error.code is Code.FAILED_PRECONDITION
        assert error.message == NOT_CONFIGURED[kind]


@pytest.mark.parametrize("name", ["TryLock", "GetNextId", "GetState"])
def test_not_configured_comes_before_field_checks_and_parsing(name: str) -> None:
    kind = UNARY[name].kind
    empty = type(VALID[name])()
    assert failure(name, empty, {}).code is Code.FAILED_PRECONDITION
    assert failure(name, b"\xff\xff\xff", {}).message == NOT_CONFIGURED[kind]


# -- lock -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resource_id": ""}, "ResourceId is empty in lock store redis"),
        ({"lock_owner": ""}, "LockOwner is empty in lock store redis"),
        ({"expire": 0}, "Expire is not positive in lock store redis"),
        ({"expire": -5}, "Expire is not positive in lock store redis"),
        # the first missing field is the one reported
        (
            {"resource_id": "", "lock_owner": "", "expire": 0},
            "ResourceId is empty in lock store redis",
        ),
        ({"lock_owner": "", "expire": 0}, "LockOwner is empty in lock store redis"),
    ],
)
def test_trylock_field_checks(fields: dict[str, object], message: str) -> None:
    request = pb.TryLockRequest(store_name="redis", resource_id="r", lock_owner="o", expire=10)
    for field, value in fields.items():
        setattr(request, field, value)
    error = failure("TryLock", request)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"resource_id": ""}, "ResourceId is empty in lock store redis"),
        ({"lock_owner": ""}, "LockOwner is empty in lock store redis"),
    ],
)
def test_unlock_field_checks(fields: dict[str, object], message: str) -> None:
    request = pb.UnlockRequest(store_name="redis", resource_id="r", lock_owner="o")
    for field, value in fields.items():
        setattr(request, field, value)
    error = failure("Unlock", request)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_field_checks_come_before_the_unknown_store_check() -> None:
    error = failure("TryLock", pb.TryLockRequest(store_name="etcd", lock_owner="o", expire=1))
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "ResourceId is empty in lock store etcd",
    )
    error = failure(
        "TryLock", pb.TryLockRequest(store_name="etcd", resource_id="r", lock_owner="o")
    )
    assert error.message == "Expire is not positive in lock store etcd"
    error = failure("GetNextId", pb.GetNextIdRequest(store_name="zk"))
    assert error.message == "Key is empty in sequencer store zk"


@pytest.mark.parametrize(
    ("name", "request_", "message"),
    [
        (
            "TryLock",
            pb.TryLockRequest(store_name="etcd", resource_id="r", lock_owner="o", expire=1),
            "lock store etcd not found",
        ),
        (
            "Unlock",
            pb.UnlockRequest(store_name="etcd", resource_id="r", lock_owner="o"),
            "lock store etcd not found",
        ),
        (
            "GetState",
            pb.GetStateRequest(store_name="mongo", key="k"),
            "state store mongo is not found",
        ),
        (
            "SaveState",
            pb.SaveStateRequest(store_name="mongo", states=[pb.StateItem(key="k")]),
            "state store mongo is not found",
        ),
        (
            "ExecuteStateTransaction",
            pb.ExecuteStateTransactionRequest(storeName="mongo"),
            "state store mongo is not found",
        ),
        (
            "GetNextId",
            pb.GetNextIdRequest(store_name="zk", key="k"),
            "Sequencer store zk not found",
        ),
        # an empty store name is just another unknown one
        ("GetNextId", pb.GetNextIdRequest(key="k"), "Sequencer store  not found"),
    ],
)
def test_unknown_store_is_invalid_argument(name: str, request_: Message, message: str) -> None:
    error = failure(name, request_)
    assert (error.code, error.message) == (Code.INVALID_ARGUMENT, message)


def test_unknown_hello_service_is_invalid_argument() -> None:
    error = failure("SayHello", pb.SayHelloRequest(service_name="nope"))
    assert error.code is Code.INVALID_ARGUMENT
    assert "nope" in error.message


# -- sequencer and state ------------------------------------------------------------


def test_getnextid_empty_key() -> None:
    error = failure("GetNextId", pb.GetNextIdRequest(store_name="redis"))
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "Key is empty in sequencer store redis",
    )


@pytest.mark.parametrize(
    ("name", "request_"),
    [
        ("GetState", pb.GetStateRequest(store_name="redis")),
        ("DeleteState", pb.DeleteStateRequest(store_name="redis")),
        (
            "SaveState",
            pb.SaveStateRequest(
                store_name="redis", states=[pb.StateItem(key="a"), pb.StateItem(value=b"x")]
            ),
        ),
        ("DeleteBulkState", pb.DeleteBulkStateRequest(store_name="redis", states=[pb.StateItem()])),
        (
            "ExecuteStateTransaction",
            pb.ExecuteStateTransactionRequest(
                storeName="redis",
                operations=[
                    pb.TransactionalStateOperation(
                        operationType="delete", request=pb.StateItem(key="a")
                    ),
                    pb.TransactionalStateOperation(operationType="upsert"),
                ],
            ),
        ),
    ],
)
def test_state_empty_key(name: str, request_: Message) -> None:
    error = failure(name, request_)
    assert (error.code, error.message) == (
        Code.INVALID_ARGUMENT,
        "key is empty in state store redis",
    )


def test_transaction_uses_the_storeName_field() -> None:
    assert UNARY["ExecuteStateTransaction"].component_field == "storeName"
    request = pb.ExecuteStateTransactionRequest(storeName="in-memory")
    assert route("ExecuteStateTransaction", request).component == "in-memory"


# -- malformed payloads -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xff\xff",  # not a valid tag
        b"\x0a\x05ab",  # field 1 claims 5 bytes, has 2
        b"\x0a\x02\xff\xfe",  # field 1 (a string) is not UTF-8
    ],
)
@pytest.mark.parametrize("name", ["TryLock", "GetState", "GetNextId", "ExecuteStateTransaction"])
def test_malformed_bytes_are_invalid_argument(name: str, payload: bytes) -> None:
    error = failure(name, payload)
    assert error.code is Code.INVALID_ARGUMENT
    assert error.message.startswith(f"malformed {name} request")


# -- route fields -------------------------------------------------------------------

READS = Repeatable("reads only")
ROUTES = {
    "SayHello": Route("quick_start_demo", "", READS),
    "GetState": Route("redis", "k", READS),
    "GetBulkState": Route("redis", "", READS),
    "SaveState": Route("redis", "", None),
    "DeleteState": Route("redis", "k", None),
    "DeleteBulkState": Route("redis", "", None),
    "ExecuteStateTransaction": Route("redis", "", None),
    "TryLock": Route("redis", "r", None),
    "Unlock": Route("redis", "r", UNARY["Unlock"].repeatable),
    "LockKeepAlive": Route("redis", "r", UNARY["LockKeepAlive"].repeatable),
    "GetNextId": Route("redis", "order", None, sticky=True),
    "GetSecret": Route("secret_demo", "k", READS),
    "GetBulkSecret": Route("secret_demo", "", READS),
}


def test_secret_calls_check_as_layotto_does() -> None:
    unknown = failure("GetSecret", pb.GetSecretRequest(store_name="nope", key="k"))
    assert (unknown.code, unknown.message) == (
        Code.INVALID_ARGUMENT,
        "failed finding secret store with key nope",
    )
    empty = failure("GetSecret", pb.GetSecretRequest(store_name="secret_demo"))
    assert (empty.code, empty.message) == (
        Code.INVALID_ARGUMENT,
        "key is empty in secret store secret_demo",
    )
    none = failure("GetBulkSecret", pb.GetBulkSecretRequest(store_name="s"), {})
    assert (none.code, none.message) == (
        Code.FAILED_PRECONDITION,
        "secret store is not configured",
    )


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_route_fields(name: str) -> None:
    assert route(name, VALID[name]) == ROUTES[name]


def test_reads_and_the_owners_lock_calls_are_repeatable_and_only_the_sequencer_is_sticky() -> None:
    assert {n for n, s in UNARY.items() if s.repeatable} == {
        "SayHello",
        "GetState",
        "GetBulkState",
        "GetConfiguration",
        "Unlock",
        "LockKeepAlive",
        "GetSecret",
        "GetBulkSecret",
    }
    assert {n for n, s in UNARY.items() if s.sticky} == {"GetNextId"}


def test_routing_key_follows_the_request() -> None:
    first = route(
        "TryLock", pb.TryLockRequest(store_name="redis", resource_id="a", lock_owner="o", expire=1)
    )
    second = route("Unlock", pb.UnlockRequest(store_name="redis", resource_id="b", lock_owner="o"))
    assert (first.routing_key, second.routing_key) == ("a", "b")
    ids = [
        route("GetNextId", pb.GetNextIdRequest(store_name="redis", key=k)).routing_key for k in "xy"
    ]
    assert ids == ["x", "y"]


# -- bindings ------------------------------------------------------------------------------

BINDINGS: Components = {"bindings": frozenset({"files"})}


def test_invoke_binding_routes_to_its_binding() -> None:
    request = pb.InvokeBindingRequest(name="files", operation="get")
    assert route("InvokeBinding", request, BINDINGS) == Route("files", "", None)


@pytest.mark.parametrize(
    ("request_", "components", "code", "message"),
    [
        (
            pb.InvokeBindingRequest(name="files", operation="get"),
            {},
            Code.FAILED_PRECONDITION,
            "output binding is not configured",
        ),
        (
            pb.InvokeBindingRequest(name="files"),
            BINDINGS,
            Code.INVALID_ARGUMENT,
            "operation field is missing from request",
        ),
        (
            pb.InvokeBindingRequest(name="other", operation="get"),
            BINDINGS,
            Code.INVALID_ARGUMENT,
            "couldn't find output binding other",
        ),
    ],
)
def test_invoke_binding_refusals(
    request_: pb.InvokeBindingRequest, components: Components, code: Code, message: str
) -> None:
    error = failure("InvokeBinding", request_, components)
    assert (error.code, error.message) == (code, message)
