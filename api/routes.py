"""Which worker answers a request, and the checks Layotto makes before routing.

Validation order and messages follow Layotto's gRPC API: no component
of the kind → FAILED_PRECONDITION; a malformed request or a missing field →
INVALID_ARGUMENT (each rpc's checks, declared in ``boundary/rpcs.py``); an
unknown component name → INVALID_ARGUMENT. Everything after routing is the
worker's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from layotto.boundary.repeats import Repeatable
from layotto.boundary.rpcs import Unary
from layotto.boundary.status import CallError, Code

Components = Mapping[str, frozenset[str]]  # kind -> configured component names

_NOT_CONFIGURED = {
    "hellos": "hello service is not configured",
    "state": "state store is not configured",
    "lock": "lock store is not configured",
    "sequencer": "Sequencer store is not configured",
    "config_store": "configuration store is not configured",
    "pub_subs": "pubsub is not configured",
    "rpcs": "rpc is not configured",
    "secret_store": "secret store is not configured",
    "bindings": "output binding is not configured",
}
_NOT_FOUND = {
    "hellos": "hello service {} not found",
    "state": "state store {} is not found",
    "lock": "lock store {} not found",
    "sequencer": "Sequencer store {} not found",
    "config_store": "configuration store {} not found",
    "pub_subs": "pubsub {} not found",
    "rpcs": "rpc {} not found",
    "secret_store": "failed finding secret store with key {}",
    "bindings": "couldn't find output binding {}",
}


@dataclass(frozen=True)
class Route:
    """Where a call goes; the rest as declared for its rpc."""

    component: str
    routing_key: str
    repeatable: Repeatable | None
    sticky: bool = False


def route(rpc: Unary, payload: bytes, components: Components) -> Route:
    """Check a request as Layotto does and say where it goes; raises CallError."""
    kind_names = components.get(rpc.kind, frozenset())
    if not kind_names:
        raise CallError(Code.FAILED_PRECONDITION, _NOT_CONFIGURED[rpc.kind])
    try:
        message = rpc.request.FromString(payload)
    except Exception as exc:
        raise CallError(Code.INVALID_ARGUMENT, f"malformed {rpc.name} request: {exc}") from None
    # A request that names no component goes to its kind's one component
    # (the config allows only one of such a kind).
    component = getattr(message, rpc.component_field) if rpc.component_field else min(kind_names)
    rpc.checks(message, component)
    if component not in kind_names:
        raise CallError(Code.INVALID_ARGUMENT, _NOT_FOUND[rpc.kind].format(component))
    return Route(component, rpc.routing_key(message), rpc.repeatable, rpc.sticky)
