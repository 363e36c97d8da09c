"""gRPC handlers of the two subscription streams (bytes in, bytes out).

SubscribeConfiguration: every request received on the stream adds a
subscription (current values first, then changes). SubscribeTopicEvents:
the first message must be ``initial_request``; then each event sent must be
answered with ``event_processed`` (SUCCESS / RETRY / DROP) before the next
one of that topic comes, as in Layotto. Validation messages follow Layotto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc

from layotto.api.routes import Components
from layotto.api.status import abort
from layotto.api.streams import (
    OPEN_TIMEOUT,
    Hub,
    Session,
    check,
    configuration_subscription,
    topic_subscription,
)
from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb

Handler = Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]


def _stream(
    hub: Hub, context: grpc.ServicerContext, body: Callable[[Session], Iterator[bytes]]
) -> Iterator[bytes]:
    """Run ``body`` as one session; a CallError ends the stream with its status.
    Beyond ``runtime.max_streams`` open streams, RESOURCE_EXHAUSTED at once."""
    if not hub.streams.try_take():
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, hub.streams.refusal())
    try:
        session = hub.session()
        context.add_callback(lambda: session.end(CallError(Code.CANCELLED, "client left")))
        try:
            yield from body(session)
        except CallError as error:
            if context.is_active():
                abort(context, error)
        finally:
            hub.forget(session)
    finally:
        hub.streams.give_back()


def _read_in_background(requests: Iterator[bytes], each: Callable[[bytes], None]) -> None:
    def read() -> None:
        try:
            for raw in requests:
                each(raw)
        except Exception:
            return  # the client cancelled or the stream broke: the session ends too

    threading.Thread(target=read, name="stream-reader", daemon=True).start()


def subscribe_configuration(hub: Hub, components: Components) -> Handler:
    def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        def body(session: Session) -> Iterator[bytes]:
            def add(raw: bytes) -> None:
                try:
                    request = pb.SubscribeConfigurationRequest.FromString(raw)
                    sub = configuration_subscription(components, request)
                    session.open(sub, time.monotonic() + OPEN_TIMEOUT)
                except CallError as error:
                    session.end(error)
                except Exception as exc:  # a request that is not protobuf
                    session.end(CallError(Code.INVALID_ARGUMENT, f"malformed request: {exc}"))

            _read_in_background(requests, add)
            yield from session.events(context.is_active)

        return _stream(hub, context, body)

    return handle


def _initial(requests: Iterator[bytes]) -> pb.SubscribeTopicEventsRequestInitial:
    raw = next(requests, None)
    try:
        first = pb.SubscribeTopicEventsRequest.FromString(raw or b"")
    except Exception as exc:
        raise CallError(Code.INVALID_ARGUMENT, f"malformed request: {exc}") from None
    check(
        raw is not None and first.HasField("initial_request"),
        Code.INVALID_ARGUMENT,
        "initial request is required",
    )
    return first.initial_request


def subscribe_topic_events(hub: Hub, components: Components) -> Handler:
    def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        def body(session: Session) -> Iterator[bytes]:
            sub = topic_subscription(components, _initial(requests))
            session.open(sub, time.monotonic() + OPEN_TIMEOUT)

            def answer(raw: bytes) -> None:
                try:
                    message = pb.SubscribeTopicEventsRequest.FromString(raw)
                except Exception as exc:
                    session.end(CallError(Code.INVALID_ARGUMENT, f"malformed request: {exc}"))
                    return
                if message.HasField("initial_request"):
                    session.end(
                        CallError(
                            Code.INVALID_ARGUMENT, "the stream already received its initial request"
                        )
                    )
                    return
                processed = message.event_processed
                session.processed(sub, processed.id, processed.status.status)

            yield pb.SubscribeTopicEventsResponse(
                initial_response=pb.SubscribeTopicEventsResponseInitial()
            ).SerializeToString()
            _read_in_background(requests, answer)
            yield from session.events(context.is_active)

        return _stream(hub, context, body)

    return handle


# One per Stream declared in boundary/rpcs.py (api/server.py checks both ways).
STREAM_HANDLERS: dict[str, Callable[[Hub, Components], Handler]] = {
    "SubscribeConfiguration": subscribe_configuration,
    "SubscribeTopicEvents": subscribe_topic_events,
}
