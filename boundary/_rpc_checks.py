"""The checks the API process makes on a request before routing it, and its routing keys.

Each check gets the parsed request and the component it names, and raises
CallError(INVALID_ARGUMENT) with the message Layotto's own API gives; the
first failing field is the one reported. Declared per rpc in
``boundary/rpcs.py``; run by ``api/routes.py``.
"""

from __future__ import annotations

from typing import Any

from layotto.boundary.status import CallError, Code


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CallError(Code.INVALID_ARGUMENT, message)


def no_checks(message: Any, component: str) -> None:
    return None


def state_key_given(message: Any, component: str) -> None:
    _require(bool(message.key), f"key is empty in state store {component}")


def secret_key_given(message: Any, component: str) -> None:
    _require(bool(message.key), f"key is empty in secret store {component}")


def state_item_keys_given(message: Any, component: str) -> None:
    for item in message.states:
        _require(bool(item.key), f"key is empty in state store {component}")


def transaction_keys_given(message: Any, component: str) -> None:
    for op in message.operations:
        _require(bool(op.request.key), f"key is empty in state store {component}")


def lock_owner_given(message: Any, component: str) -> None:
    _require(bool(message.resource_id), f"ResourceId is empty in lock store {component}")
    _require(bool(message.lock_owner), f"LockOwner is empty in lock store {component}")


def lock_owner_and_expiry_given(message: Any, component: str) -> None:
    lock_owner_given(message, component)
    _require(message.expire > 0, f"Expire is not positive in lock store {component}")


def sequencer_key_given(message: Any, component: str) -> None:
    _require(bool(message.key), f"Key is empty in sequencer store {component}")


def topic_given(message: Any, component: str) -> None:
    _require(bool(component), "pubsub name is empty")
    _require(bool(message.topic), f"topic is empty in pubsub {component}")


def operation_given(message: Any, component: str) -> None:
    _require(bool(message.operation), "operation field is missing from request")


# Routing keys: requests with the same key prefer the same worker replica.


def no_routing_key(message: Any) -> str:
    return ""


def by_key(message: Any) -> str:
    return str(message.key)


def by_resource(message: Any) -> str:
    return str(message.resource_id)
