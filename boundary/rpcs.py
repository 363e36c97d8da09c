"""Every rpc, declared once.

An entry says what the API process checks and where it routes the call, the
call's id in request frames, and which method of which block answers it in a
worker. From this table come the API's gRPC handler table
(``api/server.py``), the frame method ids (``boundary/frames.py``) and each
block's dispatch table (``workers/block.py``): adding an rpc is one entry
here plus its handler (docs/design.md, "Adding an rpc").

Three shapes:

- ``Unary``: a method of Layotto's Runtime service that one worker of its
  kind answers, in one nng exchange.
- ``Stream``: a streaming method of the Runtime service; the API process
  serves it (``api/subscribe.py``) over the ``Internal`` calls.
- ``Internal``: a call between the API process and workers that is no gRPC
  method (the subscriptions, on a worker's events socket).

``wire_id`` is the call's id in a request frame. During a hot upgrade a kept
in-memory worker still runs the old code, so an id never changes and is
never reused: a new rpc takes the next unused id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from google.protobuf.message import Message

from layotto.boundary._rpc_checks import (
    by_key,
    by_resource,
    lock_owner_and_expiry_given,
    lock_owner_given,
    no_checks,
    no_routing_key,
    operation_given,
    secret_key_given,
    sequencer_key_given,
    state_item_keys_given,
    state_key_given,
    topic_given,
    transaction_keys_given,
)
from layotto.boundary.repeats import Repeatable, unlock_settled
from layotto.proto import runtime_pb2 as pb

# (parsed request, component it names) -> None, or raises CallError
Check = Callable[[Any, str], None]
# parsed request -> routing key ("" for none)
RoutingKey = Callable[[Any], str]


@dataclass(frozen=True)
class Unary:
    name: str  # the method of spec.proto.runtime.v1.Runtime
    _: KW_ONLY
    wire_id: int
    kind: str  # building block: the config section that lists its components
    request: type[Message]
    # The request field naming the component; "" when the request names
    # none (InvokeService): the kind's one component answers it.
    component_field: str
    # The API's checks after parsing and before the component name is
    # looked up (Layotto's order: see api/routes.py).
    checks: Check = no_checks
    # Calls with the same routing key prefer the same worker replica.
    routing_key: RoutingKey = no_routing_key
    # Set when running the call twice gives the same outcome as once: a call
    # whose worker died holding it is then sent again, to a live replica
    # (boundary/repeats.py). None: the caller hears it may or may not
    # have been applied.
    repeatable: Repeatable | None = None
    # Every call of one routing key goes to the same replica (sequencer WEAK
    # ids are increasing only within one worker's segment).
    sticky: bool = False
    # The worker needs the call's gRPC metadata and deadline: the API sends
    # the request inside an envelope that carries them (boundary/envelope.py).
    # Only rpcs that declare it get one, so other frames never change.
    call_metadata: bool = False
    handler: str  # the method of the kind's block that answers it

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.kind,)


@dataclass(frozen=True)
class Stream:
    name: str  # the streaming method of spec.proto.runtime.v1.Runtime
    _: KW_ONLY
    kind: str  # its workers answer the Internal calls the API process makes for it


@dataclass(frozen=True)
class Internal:
    name: str
    _: KW_ONLY
    wire_id: int
    kinds: tuple[str, ...]  # every kind whose block answers it
    handler: str  # the method of each of those blocks that answers it


Rpc = Unary | Stream | Internal

_SUBSCRIBABLE = ("config_store", "pub_subs")

# Wire ids given to rpcs being added on other branches at the same time as
# this one. Until those land, each id is held by a placeholder that no block
# answers (a frame carrying it gets UNIMPLEMENTED), so the ids stay dense and
# every id keeps its final meaning. Merging a branch that declares one of
# them: delete its line here (a duplicate name fails at import).

RPCS: tuple[Rpc, ...] = (
    Unary(
        "SayHello",
        wire_id=0,
        kind="hellos",
        request=pb.SayHelloRequest,
        component_field="service_name",
        repeatable=Repeatable("reads only"),
        handler="say_hello",
    ),
    Unary(
        "GetState",
        wire_id=1,
        kind="state",
        request=pb.GetStateRequest,
        component_field="store_name",
        checks=state_key_given,
        routing_key=by_key,
        repeatable=Repeatable("reads only"),
        handler="get_state",
    ),
    Unary(
        "GetBulkState",
        wire_id=2,
        kind="state",
        request=pb.GetBulkStateRequest,
        component_field="store_name",
        repeatable=Repeatable("reads only"),
        handler="get_bulk_state",
    ),
    Unary(
        "SaveState",
        wire_id=3,
        kind="state",
        request=pb.SaveStateRequest,
        component_field="store_name",
        checks=state_item_keys_given,
        # not repeatable: a repeat would write its value again over a newer one
        handler="save_state",
    ),
    Unary(
        "DeleteState",
        wire_id=4,
        kind="state",
        request=pb.DeleteStateRequest,
        component_field="store_name",
        checks=state_key_given,
        routing_key=by_key,
        # not repeatable: a repeat would delete a value written in between
        handler="delete_state",
    ),
    Unary(
        "DeleteBulkState",
        wire_id=5,
        kind="state",
        request=pb.DeleteBulkStateRequest,
        component_field="store_name",
        checks=state_item_keys_given,
        # not repeatable: as DeleteState
        handler="delete_bulk_state",
    ),
    Unary(
        "ExecuteStateTransaction",
        wire_id=6,
        kind="state",
        request=pb.ExecuteStateTransactionRequest,
        component_field="storeName",  # sic: Layotto's proto spells it so
        checks=transaction_keys_given,
        # not repeatable: writes, as SaveState and DeleteState
        handler="execute_state_transaction",
    ),
    Unary(
        "TryLock",
        wire_id=7,
        kind="lock",
        request=pb.TryLockRequest,
        component_field="store_name",
        checks=lock_owner_and_expiry_given,
        routing_key=by_resource,
        # not repeatable: a repeat after a won attempt finds the lock taken: false
        handler="try_lock",
    ),
    Unary(
        "Unlock",
        wire_id=8,
        kind="lock",
        request=pb.UnlockRequest,
        component_field="store_name",
        checks=lock_owner_given,
        routing_key=by_resource,
        repeatable=Repeatable(
            "only the owner's unlock deletes the lock; a repeat after a lost attempt "
            "that finds no lock means it is released: SUCCESS",
            settle=unlock_settled,
        ),
        handler="unlock",
    ),
    Unary(
        "LockKeepAlive",
        wire_id=9,
        kind="lock",
        request=pb.LockKeepAliveRequest,
        component_field="store_name",
        checks=lock_owner_and_expiry_given,
        routing_key=by_resource,
        repeatable=Repeatable("sets the expiry to `expire` from now again, for the same owner"),
        handler="lock_keep_alive",
    ),
    Unary(
        "GetNextId",
        wire_id=10,
        kind="sequencer",
        request=pb.GetNextIdRequest,
        component_field="store_name",
        checks=sequencer_key_given,
        routing_key=by_key,
        sticky=True,
        # not repeatable: each run takes another id
        handler="get_next_id",
    ),
    Unary(
        "GetConfiguration",
        wire_id=11,
        kind="config_store",
        request=pb.GetConfigurationRequest,
        component_field="store_name",
        repeatable=Repeatable("reads only"),
        handler="get_configuration",
    ),
    Unary(
        "SaveConfiguration",
        wire_id=12,
        kind="config_store",
        request=pb.SaveConfigurationRequest,
        component_field="store_name",
        # not repeatable: as SaveState
        handler="save_configuration",
    ),
    Unary(
        "DeleteConfiguration",
        wire_id=13,
        kind="config_store",
        request=pb.DeleteConfigurationRequest,
        component_field="store_name",
        # not repeatable: as DeleteState
        handler="delete_configuration",
    ),
    Stream("SubscribeConfiguration", kind="config_store"),
    Unary(
        "PublishEvent",
        wire_id=14,
        kind="pub_subs",
        request=pb.PublishEventRequest,
        component_field="pubsub_name",
        checks=topic_given,
        # not repeatable: a repeat publishes the event twice
        handler="publish_event",
    ),
    Stream("SubscribeTopicEvents", kind="pub_subs"),
    # The streams' calls, on the worker's events socket (workers/subscriptions.py).
    Internal("OpenSubscription", wire_id=15, kinds=_SUBSCRIBABLE, handler="open_subscription"),
    Internal("PollEvents", wire_id=16, kinds=_SUBSCRIBABLE, handler="poll_events"),
    Internal("EventProcessed", wire_id=17, kinds=("pub_subs",), handler="event_processed"),
    Internal("CloseSubscription", wire_id=18, kinds=_SUBSCRIBABLE, handler="close_subscription"),
    Unary(
        "GetSecret",
        wire_id=19,
        kind="secret_store",
        request=pb.GetSecretRequest,
        component_field="store_name",
        checks=secret_key_given,
        routing_key=by_key,
        repeatable=Repeatable("reads only"),
        handler="get_secret",
    ),
    Unary(
        "GetBulkSecret",
        wire_id=20,
        kind="secret_store",
        request=pb.GetBulkSecretRequest,
        component_field="store_name",
        repeatable=Repeatable("reads only"),
        handler="get_bulk_secret",
    ),
    Unary(
        "InvokeService",
        wire_id=21,
        kind="rpcs",
        request=pb.InvokeServiceRequest,
        component_field="",  # names a service id, not a component: one rpcs component
        # not repeatable: the verb may be POST, and the service, not us, decides
        # what a second run does (even GET may count visits)
        call_metadata=True,
        handler="invoke_service",
    ),
    Unary(
        "InvokeBinding",
        wire_id=22,
        kind="bindings",
        request=pb.InvokeBindingRequest,
        component_field="name",
        checks=operation_given,
        # not repeatable: most operations write (create, post, put, delete), and
        # even a get reaches a service outside the sidecar that may count it
        handler="invoke_binding",
    ),
)


MAX_WIRE_ID = 255  # one byte in a request frame


def _by_wire_id(rpcs: Iterable[Rpc]) -> tuple[Unary | Internal, ...]:
    """The calls that travel in request frames, in id order. Ids are unique
    and fit a byte; a gap is an id assigned to an rpc declared elsewhere (a
    branch not merged yet) or retired, and is never given to another."""
    wire = sorted((r for r in rpcs if not isinstance(r, Stream)), key=lambda r: r.wire_id)
    ids = [r.wire_id for r in wire]
    if len(set(ids)) != len(ids) or any(not 0 <= i <= MAX_WIRE_ID for i in ids):
        raise ValueError(f"rpc wire ids must be unique and 0..{MAX_WIRE_ID}, got {ids}")
    return tuple(wire)


def _unique_names(rpcs: tuple[Rpc, ...]) -> tuple[Rpc, ...]:
    names = [r.name for r in rpcs]
    if len(set(names)) != len(names):
        raise ValueError(f"rpc names must be unique: {sorted(names)}")
    return rpcs


# In wire id order.
WIRE: tuple[Unary | Internal, ...] = _by_wire_id(_unique_names(RPCS))
UNARY: Mapping[str, Unary] = {r.name: r for r in RPCS if isinstance(r, Unary)}
STREAMS: Mapping[str, Stream] = {r.name: r for r in RPCS if isinstance(r, Stream)}
KINDS: frozenset[str] = frozenset(kind for r in WIRE for kind in r.kinds)


def handlers_of(kind: str) -> dict[str, str]:
    """Call name -> the method of ``kind``'s block that answers it."""
    return {r.name: r.handler for r in WIRE if kind in r.kinds}
