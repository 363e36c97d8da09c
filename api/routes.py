"""Which worker answers a request, and the checks Layotto makes before routing.

Validation order and messages follow Layotto (reference §1.9): no component
of the kind → FAILED_PRECONDITION; a missing field → INVALID_ARGUMENT; an
unknown component name → INVALID_ARGUMENT. Everything after routing is the
worker's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb

Components = Mapping[str, frozenset[str]]  # kind -> configured component names

_NOT_CONFIGURED = {
    "hellos": "hello service is not configured",
    "state": "state store is not configured",
    "lock": "lock store is not configured",
    "sequencer": "Sequencer store is not configured",
    "config_store": "configuration store is not configured",
    "pub_subs": "pubsub is not configured",
}
_NOT_FOUND = {
    "hellos": "hello service {} not found",
    "state": "state store {} is not found",
    "lock": "lock store {} not found",
    "sequencer": "Sequencer store {} not found",
    "config_store": "configuration store {} not found",
    "pub_subs": "pubsub {} not found",
}


@dataclass(frozen=True)
class Route:
    component: str
    # Requests with the same routing key prefer the same worker replica.
    routing_key: str
    # Only a request that cannot change anything may be re-sent to another
    # worker when the first one died holding it.
    idempotent: bool
    # Sequencer WEAK ids are increasing only within one worker's segment, so
    # a key must always go to the same replica.
    sticky: bool = False


@dataclass(frozen=True)
class RpcSpec:
    name: str
    kind: str
    request: Any  # the protobuf request class
    store_field: str
    checks: Callable[[Any, str], None]
    routing_key: Callable[[Any], str]
    idempotent: bool = False
    sticky: bool = False

    def route(self, payload: bytes, components: Components) -> Route:
        kind_names = components.get(self.kind, frozenset())
        if not kind_names:
            raise CallError(Code.FAILED_PRECONDITION, _NOT_CONFIGURED[self.kind])
        try:
            message = self.request.FromString(payload)
        except Exception as exc:
            raise CallError(
                Code.INVALID_ARGUMENT, f"malformed {self.name} request: {exc}"
            ) from None
        store = getattr(message, self.store_field)
        self.checks(message, store)
        if store not in kind_names:
            raise CallError(Code.INVALID_ARGUMENT, _NOT_FOUND[self.kind].format(store))
        return Route(store, self.routing_key(message), self.idempotent, self.sticky)


def _no_checks(message: Any, store: str) -> None:
    return None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CallError(Code.INVALID_ARGUMENT, message)


def _state_key(message: Any, store: str) -> None:
    _require(bool(message.key), f"key is empty in state store {store}")


def _state_items(message: Any, store: str) -> None:
    for item in message.states:
        _require(bool(item.key), f"key is empty in state store {store}")


def _transaction(message: Any, store: str) -> None:
    for op in message.operations:
        _require(bool(op.request.key), f"key is empty in state store {store}")


def _lock_owner(message: Any, store: str) -> None:
    _require(bool(message.resource_id), f"ResourceId is empty in lock store {store}")
    _require(bool(message.lock_owner), f"LockOwner is empty in lock store {store}")


def _lock_expiring(message: Any, store: str) -> None:
    _lock_owner(message, store)
    _require(message.expire > 0, f"Expire is not positive in lock store {store}")


def _sequencer_key(message: Any, store: str) -> None:
    _require(bool(message.key), f"Key is empty in sequencer store {store}")


def _publish(message: Any, store: str) -> None:
    _require(bool(store), "pubsub name is empty")
    _require(bool(message.topic), f"topic is empty in pubsub {store}")


def _key(message: Any) -> str:
    return str(message.key)


def _resource(message: Any) -> str:
    return str(message.resource_id)


def _none(message: Any) -> str:
    return ""


RPCS: dict[str, RpcSpec] = {
    spec.name: spec
    for spec in (
        RpcSpec(
            "SayHello",
            "hellos",
            pb.SayHelloRequest,
            "service_name",
            _no_checks,
            _none,
            idempotent=True,
        ),
        RpcSpec(
            "GetState", "state", pb.GetStateRequest, "store_name", _state_key, _key, idempotent=True
        ),
        RpcSpec(
            "GetBulkState",
            "state",
            pb.GetBulkStateRequest,
            "store_name",
            _no_checks,
            _none,
            idempotent=True,
        ),
        RpcSpec("SaveState", "state", pb.SaveStateRequest, "store_name", _state_items, _none),
        RpcSpec("DeleteState", "state", pb.DeleteStateRequest, "store_name", _state_key, _key),
        RpcSpec(
            "DeleteBulkState", "state", pb.DeleteBulkStateRequest, "store_name", _state_items, _none
        ),
        RpcSpec(
            "ExecuteStateTransaction",
            "state",
            pb.ExecuteStateTransactionRequest,
            "storeName",
            _transaction,
            _none,
        ),
        RpcSpec("TryLock", "lock", pb.TryLockRequest, "store_name", _lock_expiring, _resource),
        RpcSpec("Unlock", "lock", pb.UnlockRequest, "store_name", _lock_owner, _resource),
        RpcSpec(
            "LockKeepAlive",
            "lock",
            pb.LockKeepAliveRequest,
            "store_name",
            _lock_expiring,
            _resource,
        ),
        RpcSpec(
            "GetNextId",
            "sequencer",
            pb.GetNextIdRequest,
            "store_name",
            _sequencer_key,
            _key,
            sticky=True,
        ),
        RpcSpec(
            "GetConfiguration",
            "config_store",
            pb.GetConfigurationRequest,
            "store_name",
            _no_checks,
            _none,
            idempotent=True,
        ),
        RpcSpec(
            "SaveConfiguration",
            "config_store",
            pb.SaveConfigurationRequest,
            "store_name",
            _no_checks,
            _none,
        ),
        RpcSpec(
            "DeleteConfiguration",
            "config_store",
            pb.DeleteConfigurationRequest,
            "store_name",
            _no_checks,
            _none,
        ),
        RpcSpec("PublishEvent", "pub_subs", pb.PublishEventRequest, "pubsub_name", _publish, _none),
    )
}
