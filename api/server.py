"""The gRPC face: Layotto's services on a synchronous grpcio server.

Handlers receive and return raw bytes (no deserializer/serializer): the API
process parses a request only to route it, and never re-encodes anything.
A threaded server is used because the baseline shows it amortises per-call
cost under concurrency where grpc.aio does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from layotto.api.nng_client import WorkerPool
from layotto.api.routes import Components, route
from layotto.api.status import abort
from layotto.api.streams import Hub
from layotto.api.subscribe import STREAM_HANDLERS
from layotto.boundary import envelope, rpcs
from layotto.boundary.status import CallError
from layotto.proto import lifecycle_pb2, runtime_pb2

_FOREVER = 365 * 24 * 3600.0
_SERVICES = (
    runtime_pb2.DESCRIPTOR.services_by_name["Runtime"],
    lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"],
)


def _routed(
    rpc: rpcs.Unary, pools: Mapping[str, WorkerPool], components: Components, default_timeout: float
) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        remaining = context.time_remaining()
        # grpcio reports "no deadline" as None or as an enormous number.
        timeout = default_timeout if remaining is None or remaining > _FOREVER else remaining
        deadline = time.monotonic() + timeout
        try:
            where = route(rpc, request, components)
            if rpc.call_metadata:
                payload = envelope.wrap(request, deadline, context.invocation_metadata())
            else:
                payload = request
            return pools[where.component].call(
                rpc.name,
                payload,
                deadline,
                routing_key=where.routing_key,
                sticky=where.sticky,
                repeatable=where.repeatable,
            )
        except CallError as error:
            abort(context, error)
            raise AssertionError("abort returns only by raising") from None

    return handle


def _unimplemented(full_name: str, streaming_response: bool) -> Callable[..., Any]:
    message = f"{full_name} is not implemented by layotto-py yet"

    def reject(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    def reject_stream(_request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        yield None  # pragma: no cover - makes this a generator

    return reject_stream if streaming_response else reject


def _method_handler(method: Any, behaviour: Callable[..., Any]) -> grpc.RpcMethodHandler[Any, Any]:
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(method.client_streaming, method.server_streaming)]
    return factory(behaviour)


def _declared_behaviours(
    pools: Mapping[str, WorkerPool],
    components: Components,
    default_timeout: float,
    hub: Hub,
    stream_threads: ThreadPoolExecutor | None,
) -> dict[str, Callable[..., Any]]:
    """Runtime method name -> its handler, for every rpc declared in boundary/rpcs.py."""
    unserved = set(rpcs.STREAMS) ^ set(STREAM_HANDLERS)
    if unserved:
        raise LookupError(f"streams declared or served but not both: {sorted(unserved)}")
    behaviours: dict[str, Callable[..., Any]] = {
        name: _routed(rpc, pools, components, default_timeout) for name, rpc in rpcs.UNARY.items()
    }
    for name in rpcs.STREAMS:
        behaviour = behaviours[name] = STREAM_HANDLERS[name](hub, components)
        if stream_threads is not None:
            # grpcio runs a method whose behaviour has this attribute on that
            # pool instead of the server's: streams never take unary threads.
            behaviour.experimental_thread_pool = stream_threads  # type: ignore[attr-defined]
    return behaviours


def build_handlers(
    pools: Mapping[str, WorkerPool],
    components: Components,
    default_timeout: float,
    hub: Hub,
    stream_threads: ThreadPoolExecutor | None = None,
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """Every method of the services: the declared rpcs, and UNIMPLEMENTED for
    the rest. Subscription streams run on ``stream_threads`` when given."""
    declared = _declared_behaviours(pools, components, default_timeout, hub, stream_threads)
    handlers = []
    for service in _SERVICES:
        methods = {}
        for method in service.methods:
            behaviour = declared.pop(method.name, None) if service.name == "Runtime" else None
            if behaviour is None:
                behaviour = _unimplemented(
                    f"{service.full_name}/{method.name}", method.server_streaming
                )
            methods[method.name] = _method_handler(method, behaviour)
        handlers.append(grpc.method_handlers_generic_handler(service.full_name, methods))
    if declared:
        raise LookupError(f"rpcs declared but not in the Runtime service: {sorted(declared)}")
    return handlers


# After the connection-age GOAWAY, calls already on the connection may run
# this long (~24 days, gRPC's maximum): a subscription stream must not be cut
# every max_connection_age + grace. Streams leave a draining API process
# because it ends them (api/streams.py), and a stop bounds the rest.
_GRACE_FOR_CALLS_UNDER_WAY_MS = 2**31 - 1


def start_server(
    address: str,
    handlers: list[grpc.GenericRpcHandler[Any, Any]],
    *,
    threads: int,
    max_connection_age: float,
    max_receive_message_size: int = 4 * 1024 * 1024,
    max_send_message_size: int | None = None,
) -> grpc.Server:
    """Bind with SO_REUSEPORT (a hot upgrade starts the next API process on the
    same port) and a connection age, whose GOAWAY moves clients off an old
    process without failing a call (docs/design.md). Message size limits are
    runtime.max_receive_message_size and runtime.max_send_message_size (None:
    no limit, gRPC's default)."""
    options = [
        ("grpc.so_reuseport", 1),
        ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
        ("grpc.max_connection_age_grace_ms", _GRACE_FOR_CALLS_UNDER_WAY_MS),
        ("grpc.max_receive_message_length", max_receive_message_size),
        (
            "grpc.max_send_message_length",
            -1 if max_send_message_size is None else max_send_message_size,
        ),
    ]
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        handlers=handlers,
        options=options,
    )
    server.add_insecure_port(address)
    server.start()
    return server
