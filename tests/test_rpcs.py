"""The rpc declarations (boundary/rpcs.py): ids that never change, and an API
that serves exactly what is declared."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import grpc
import pytest

from layotto.api import routes, server
from layotto.api.streams import Hub
from layotto.api.subscribe import STREAM_HANDLERS
from layotto.boundary import rpcs
from layotto.boundary.frames import (
    METHOD_IDS,
    METHODS,
    ProtocolError,
    decode_request,
    encode_request,
)
from layotto.proto import runtime_pb2

RUNTIME = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]

# A kept in-memory worker runs the old code during a hot upgrade: these ids
# are the wire contract. Append new ones; never change or reuse one.
PINNED_IDS = {
    "SayHello": 0,
    "GetState": 1,
    "GetBulkState": 2,
    "SaveState": 3,
    "DeleteState": 4,
    "DeleteBulkState": 5,
    "ExecuteStateTransaction": 6,
    "TryLock": 7,
    "Unlock": 8,
    "LockKeepAlive": 9,
    "GetNextId": 10,
    "GetConfiguration": 11,
    "SaveConfiguration": 12,
    "DeleteConfiguration": 13,
    "PublishEvent": 14,
    "OpenSubscription": 15,
    "PollEvents": 16,
    "EventProcessed": 17,
    "CloseSubscription": 18,
}


def test_wire_ids_never_change() -> None:
    assert {name: METHOD_IDS.get(name) for name in PINNED_IDS} == PINNED_IDS
    for name, method_id in PINNED_IDS.items():
        frame = encode_request(name, 7, 1.0, b"")
        assert frame[1] == method_id
        assert decode_request(frame).method == name
    newer = {name: i for name, i in METHOD_IDS.items() if name not in PINNED_IDS}
    assert all(i >= len(PINNED_IDS) for i in newer.values()), newer


def test_frames_carry_exactly_the_unary_and_internal_calls() -> None:
    assert tuple(r.name for r in rpcs.WIRE) == METHODS
    assert set(METHODS) == {r.name for r in rpcs.RPCS if not isinstance(r, rpcs.Stream)}
    assert not set(METHODS) & set(rpcs.STREAMS)


@pytest.mark.parametrize(
    "ids",
    [[0, 1, 1], [0, -1], [0, 256]],
    ids=["duplicate", "negative", "past a byte"],
)
def test_wire_ids_must_be_unique_and_fit_a_byte(ids: list[int]) -> None:
    declared = [
        rpcs.Internal(f"M{i}", wire_id=w, kinds=("x",), handler="h") for i, w in enumerate(ids)
    ]
    with pytest.raises(ValueError, match="wire ids"):
        rpcs._by_wire_id(declared)


def test_a_gap_is_an_id_assigned_elsewhere_and_unknown_here() -> None:
    declared = [rpcs.Internal(f"M{w}", wire_id=w, kinds=("x",), handler="h") for w in (0, 2)]
    assert [r.wire_id for r in rpcs._by_wire_id(declared)] == [0, 2]
    assert METHOD_IDS["InvokeService"] == 21
    undeclared = max(METHOD_IDS.values()) + 1
    with pytest.raises(ProtocolError, match=f"method {undeclared}"):
        decode_request(bytes([1, undeclared]) + bytes(17))


def test_names_must_be_unique() -> None:
    twice = (rpcs.Stream("S", kind="x"), rpcs.Stream("S", kind="y"))
    with pytest.raises(ValueError, match="names must be unique"):
        rpcs._unique_names(twice)


# -- the declarations match Layotto's proto ------------------------------------------


@pytest.mark.parametrize("name", sorted(rpcs.UNARY))
def test_a_unary_rpc_is_a_runtime_method_with_its_request_type(name: str) -> None:
    method = RUNTIME.methods_by_name[name]
    assert not (method.client_streaming or method.server_streaming)
    assert method.input_type is rpcs.UNARY[name].request.DESCRIPTOR
    field = rpcs.UNARY[name].component_field
    assert field in method.input_type.fields_by_name or (field == "" and name == "InvokeService")


@pytest.mark.parametrize("name", sorted(rpcs.STREAMS))
def test_a_stream_is_a_streaming_runtime_method(name: str) -> None:
    method = RUNTIME.methods_by_name[name]
    assert method.client_streaming and method.server_streaming


def test_internal_calls_are_no_grpc_method() -> None:
    internal = [r.name for r in rpcs.RPCS if isinstance(r, rpcs.Internal)]
    assert internal == ["OpenSubscription", "PollEvents", "EventProcessed", "CloseSubscription"]
    assert not set(internal) & set(RUNTIME.methods_by_name)


@pytest.mark.parametrize("name", sorted(rpcs.STREAMS))
def test_the_kind_of_a_stream_answers_the_subscription_calls(name: str) -> None:
    handled = rpcs.handlers_of(rpcs.STREAMS[name].kind)
    assert {"OpenSubscription", "PollEvents", "CloseSubscription"} <= set(handled)


# -- the API serves what is declared, and only that ----------------------------------


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class _Context:
    def time_remaining(self) -> float | None:
        return None

    def abort(self, code: grpc.StatusCode, message: str) -> NoReturn:
        raise _Aborted(code, message)


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _runtime_behaviour(handlers: list[Any], name: str) -> Callable[..., Any]:
    for handler in handlers:
        found = handler.service(_Details(f"/{RUNTIME.full_name}/{name}"))
        if found is not None:
            arity = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
            return next(getattr(found, a) for a in arity if getattr(found, a) is not None)
    raise AssertionError(f"no handler for {name}")


@pytest.fixture
def handlers() -> list[Any]:
    return server.build_handlers({}, {}, 1.0, Hub({}))


@pytest.mark.parametrize("name", sorted(rpcs.UNARY))
def test_the_api_routes_every_declared_unary_rpc(handlers: list[Any], name: str) -> None:
    # No component of the kind is configured: the routed handler says so,
    # which only the declared rpc's route does.
    with pytest.raises(_Aborted) as aborted:
        _runtime_behaviour(handlers, name)(b"", _Context())
    assert aborted.value.code is grpc.StatusCode.FAILED_PRECONDITION
    assert aborted.value.message == routes._NOT_CONFIGURED[rpcs.UNARY[name].kind]


def test_every_runtime_method_is_served_or_unimplemented(handlers: list[Any]) -> None:
    declared = set(rpcs.UNARY) | set(rpcs.STREAMS)
    for method in RUNTIME.methods:
        behaviour = _runtime_behaviour(handlers, method.name)
        unimplemented = behaviour.__qualname__.startswith("_unimplemented.")
        assert unimplemented is (method.name not in declared), method.name
    assert {"GetFile"} <= {m.name for m in RUNTIME.methods if m.name not in declared}


def test_an_undeclared_method_is_unimplemented(handlers: list[Any]) -> None:
    with pytest.raises(_Aborted) as aborted:
        _runtime_behaviour(handlers, "DelFile")(b"", _Context())
    assert aborted.value.code is grpc.StatusCode.UNIMPLEMENTED


def test_every_declared_stream_has_an_api_handler_and_back() -> None:
    assert set(STREAM_HANDLERS) == set(rpcs.STREAMS)


def test_a_declared_stream_without_an_api_handler_stops_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(STREAM_HANDLERS, "SubscribeTopicEvents")
    with pytest.raises(LookupError, match="SubscribeTopicEvents"):
        server.build_handlers({}, {}, 1.0, Hub({}))


def test_a_declared_rpc_missing_from_the_proto_stops_the_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    typo = rpcs.Unary(
        "GetStat",
        wire_id=99,
        kind="state",
        request=runtime_pb2.GetStateRequest,
        component_field="store_name",
        handler="get_state",
    )
    monkeypatch.setattr(rpcs, "UNARY", {**rpcs.UNARY, typo.name: typo})
    with pytest.raises(LookupError, match="GetStat"):
        server.build_handlers({}, {}, 1.0, Hub({}))
