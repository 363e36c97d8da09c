"""WebSocket endpoint: topics and configuration keys as JSON messages.

The supervisor owns the HTTP listener and relays ``GET /ws`` upgrades to the
current API process's unix socket ``<run_dir>/ws-<generation>.sock``
(supervisor/actuator.py), where this module serves them with trio-websocket.
Trio runs in its own thread; the rest of the API process is threads and
grpcio, so every blocking call (opening a subscription, acknowledging an
event, waiting for the next event) is made in a worker thread.

One Hub Session per connection, as many subscriptions as the client asks
for. Validation, payloads and semantics are those of the gRPC streams in
api/subscribe.py: a topic delivers its next event only after the client
acknowledged the previous one (the worker enforces it), a RETRY brings the
same event again. The protocol is documented in docs/websocket.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from layotto.api.limits import Budget
from layotto.api.routes import Components
from layotto.api.streams import (
    OPEN_TIMEOUT,
    Hub,
    Session,
    Subscription,
    check,
    configuration_subscription,
    topic_subscription,
)
from layotto.boundary.status import CallError, Code
from layotto.proto import appcallback_pb2 as cb
from layotto.proto import runtime_pb2 as pb

log = logging.getLogger("layotto.api.websocket")

HANDSHAKE_TIMEOUT = 10.0  # for the client to complete the opening handshake
CLOSE_TIMEOUT = 5.0  # for the client to answer our close frame
STOP_TIMEOUT = 10.0
CLOSE_RESTART = 1012  # "service restart": subscribe again
CLOSE_INTERNAL = 1011
_MAX_REASON = 123  # bytes: a close frame's reason must fit in a control frame
# Connections the kernel queues until trio accepts them (it caps this at
# net.core.somaxconn): a burst of clients waits here instead of being dropped.
BACKLOG = 4096

STATUSES = {
    "SUCCESS": cb.TopicEventResponse.SUCCESS,
    "RETRY": cb.TopicEventResponse.RETRY,
    "DROP": cb.TopicEventResponse.DROP,
}
OPS = ("subscribe", "watch", "ack")


def _string(request: dict[str, Any], field: str) -> str:
    value = request.get(field, "")
    check(isinstance(value, str), Code.INVALID_ARGUMENT, f"{field} must be a string")
    return str(value)


def _strings(request: dict[str, Any], field: str) -> list[str]:
    value = request.get(field, [])
    check(
        isinstance(value, list) and all(isinstance(v, str) for v in value),
        Code.INVALID_ARGUMENT,
        f"{field} must be an array of strings",
    )
    return list(value)


def _string_map(request: dict[str, Any], field: str) -> dict[str, str]:
    value = request.get(field, {})
    check(
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values()),
        Code.INVALID_ARGUMENT,
        f"{field} must be an object of strings",
    )
    return dict(value)


def _parse(message: str | bytes) -> dict[str, Any]:
    check(
        isinstance(message, str),
        Code.INVALID_ARGUMENT,
        "binary messages are not supported: send JSON text",
    )
    try:
        request = json.loads(message)
    except ValueError as exc:
        raise CallError(Code.INVALID_ARGUMENT, f"malformed JSON: {exc}") from None
    check(isinstance(request, dict), Code.INVALID_ARGUMENT, "a message must be a JSON object")
    return dict(request)


_GONE = (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


def _client_gone(exc: BaseException) -> bool:
    """Only the client's leaving (also when trio grouped it): nothing to report."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(_GONE)[1] is None
    return isinstance(exc, _GONE)


def _reason(message: str) -> str:
    return message.encode()[:_MAX_REASON].decode(errors="ignore")


def _next(events: Iterator[tuple[Subscription, bytes]]) -> tuple[Subscription, bytes] | None:
    return next(events, None)


def topic_event(event: cb.TopicEventRequest) -> dict[str, Any]:
    """A delivered event as the client sees it (CloudEvents attributes)."""
    message: dict[str, Any] = {
        "type": "event",
        "pubsub": event.pubsub_name,
        "topic": event.topic,
        "id": event.id,
        "source": event.source,
        # "type" already says what the message is: the CloudEvent's type goes here.
        "event_type": event.type,
        "specversion": event.spec_version,
        "datacontenttype": event.data_content_type,
        "metadata": dict(event.metadata),
    }
    try:
        message["data"] = event.data.decode("utf-8")
    except UnicodeDecodeError:
        message["data_base64"] = base64.b64encode(event.data).decode("ascii")
    return message


def configuration(response: pb.SubscribeConfigurationResponse) -> dict[str, Any]:
    return {
        "type": "configuration",
        "store": response.store_name,
        "app_id": response.app_id,
        "items": [
            {
                "key": item.key,
                "content": item.content,
                "group": item.group,
                "label": item.label,
                "tags": dict(item.tags),
            }
            for item in response.items
        ],
    }


class Client:
    """One WebSocket connection: one Session, any number of subscriptions."""

    def __init__(
        self,
        hub: Hub,
        components: Components,
        ws: WebSocketConnection,
        threads: trio.CapacityLimiter | None,
    ) -> None:
        self.hub = hub
        self.threads = threads
        self.components = components
        self.pubsubs = components.get("pub_subs", frozenset())
        self.ws = ws
        self.session: Session = hub.session()
        self.active = True
        # (pubsub, topic, event id) -> its subscription, from delivery until the
        # ack. Ids are unique per source only (publishers may choose them), so
        # one id may wait on two topics of a connection.
        self.pending: dict[tuple[str, str, str], Subscription] = {}
        # id(sub) -> (sub, set once "subscribed"/"watching" went out): no
        # event of a subscription overtakes its confirmation
        self.confirmed: dict[int, tuple[Subscription, trio.Event]] = {}

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._events, nursery.cancel_scope)
                nursery.start_soon(self._requests, nursery.cancel_scope)
        finally:
            self.active = False
            self.session.end(CallError(Code.CANCELLED, "client left"))
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.hub.forget, self.session, limiter=self.threads)

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    # -- server -> client -------------------------------------------------------

    async def _events(self, done: trio.CancelScope) -> None:
        events = self.session.tagged_events(lambda: self.active)
        try:
            while True:
                # Abandoned on cancel: the generator notices ``active`` within a second.
                item = await trio.to_thread.run_sync(
                    _next, events, abandon_on_cancel=True, limiter=self.threads
                )
                if item is None:
                    return
                sub, raw = item
                entry = self.confirmed.get(id(sub))
                if entry is not None:
                    await entry[1].wait()
                message = self._render(sub, raw)
                if message is not None:
                    await self._send(message)
        except CallError as error:  # hot upgrade or stop, or a subscription that cannot move
            code = CLOSE_RESTART if error.code == Code.UNAVAILABLE else CLOSE_INTERNAL
            log.info("closing a WebSocket (%d): %s", code, error.message)
            with trio.move_on_after(CLOSE_TIMEOUT):
                await self.ws.aclose(code, _reason(error.message))
        except ConnectionClosed:
            pass
        finally:
            done.cancel()

    def _render(self, sub: Subscription, raw: bytes) -> dict[str, Any] | None:
        if sub.component in self.pubsubs:
            response = pb.SubscribeTopicEventsResponse.FromString(raw)
            if not response.HasField("event_message"):
                return None
            event = response.event_message
            self.pending[sub.component, sub.routing_key, event.id] = sub
            return topic_event(event)
        return configuration(pb.SubscribeConfigurationResponse.FromString(raw))

    # -- client -> server -------------------------------------------------------

    async def _requests(self, done: trio.CancelScope) -> None:
        try:
            while True:
                reply = await self._handle(await self.ws.get_message())
                if reply is not None:
                    await self._send(reply)
        except ConnectionClosed:
            pass
        finally:
            done.cancel()

    async def _handle(self, message: str | bytes) -> dict[str, Any] | None:
        """Carry out one client message; the error message to send, if any."""
        op: Any = None
        try:
            request = _parse(message)
            op = request.get("op")
            handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
                "subscribe": self._subscribe,
                "watch": self._watch,
                "ack": self._ack,
            }
            handler = handlers.get(op) if isinstance(op, str) else None
            check(
                handler is not None,
                Code.INVALID_ARGUMENT,
                f"unknown op {op!r}: use subscribe, watch or ack",
            )
            assert handler is not None
            await handler(request)
            return None
        except CallError as error:
            return self._error(op, error.code, error.message)
        except Exception as exc:
            log.exception("WebSocket request failed")
            return self._error(op, Code.INTERNAL, f"internal error: {exc}")

    @staticmethod
    def _error(op: Any, code: Code, message: str) -> dict[str, Any]:
        reply: dict[str, Any] = {"type": "error", "code": code.name, "message": message}
        if op in OPS:
            reply["op"] = op
        return reply

    async def _open(self, sub: Subscription, confirmation: dict[str, Any]) -> None:
        """Open ``sub``, then confirm it before any of its events goes out."""
        key = id(sub)
        sent = trio.Event()
        self.confirmed[key] = (sub, sent)
        try:
            # Not abandoned on cancel: a subscription opened after the session
            # was forgotten would stay open in the worker until its lease ends.
            await trio.to_thread.run_sync(
                self.session.open, sub, time.monotonic() + OPEN_TIMEOUT, limiter=self.threads
            )
        except BaseException:
            del self.confirmed[key]
            raise
        try:
            await self._send(confirmation)
        finally:
            sent.set()

    async def _subscribe(self, request: dict[str, Any]) -> None:
        pubsub, topic = _string(request, "pubsub"), _string(request, "topic")
        metadata = _string_map(request, "metadata")
        initial = pb.SubscribeTopicEventsRequestInitial(
            pubsub_name=pubsub, topic=topic, metadata=metadata
        )
        sub = topic_subscription(self.components, initial)  # as SubscribeTopicEvents
        await self._open(sub, {"type": "subscribed", "pubsub": pubsub, "topic": topic})

    async def _watch(self, request: dict[str, Any]) -> None:
        store = _string(request, "store")
        app_id, group, label = (_string(request, f) for f in ("app_id", "group", "label"))
        keys, metadata = _strings(request, "keys"), _string_map(request, "metadata")
        subscribe = pb.SubscribeConfigurationRequest(
            store_name=store, app_id=app_id, group=group, label=label, keys=keys, metadata=metadata
        )
        sub = configuration_subscription(self.components, subscribe)  # as the gRPC stream
        await self._open(sub, {"type": "watching", "store": store})

    async def _ack(self, request: dict[str, Any]) -> None:
        event_id = _string(request, "id")
        pubsub, topic = _string(request, "pubsub"), _string(request, "topic")
        status = request.get("status", "SUCCESS")
        check(bool(event_id), Code.INVALID_ARGUMENT, "id is required")
        check(
            isinstance(status, str) and status in STATUSES,
            Code.INVALID_ARGUMENT,
            f"status must be SUCCESS, RETRY or DROP, not {status!r}",
        )
        waiting = [
            key
            for key in self.pending
            if key[2] == event_id and pubsub in ("", key[0]) and topic in ("", key[1])
        ]
        check(bool(waiting), Code.NOT_FOUND, f"no event {event_id!r} is waiting for an ack")
        check(
            len(waiting) == 1,
            Code.INVALID_ARGUMENT,
            f"event {event_id!r} is waiting on several topics: add pubsub and topic",
        )
        sub = self.pending.pop(waiting[0])
        await trio.to_thread.run_sync(
            self.session.processed, sub, event_id, int(STATUSES[status]), limiter=self.threads
        )


class WebSocketServer:
    """Serves WebSocket on a unix socket, from a thread running trio."""

    def __init__(
        self, hub: Hub, components: Components, path: str, connections: Budget | None = None
    ) -> None:
        self.hub = hub
        self.components = components
        self.path = path
        self.connections = connections or Budget.unlimited("WebSocket connections")
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._threads: trio.CapacityLimiter | None = None

    def start(self) -> None:
        """Listen now (connections wait in the backlog until trio runs);
        raises OSError when the socket cannot be made."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by a process of this generation that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
        self._thread = threading.Thread(target=self._run, args=(sock,), name="websocket")
        self._thread.daemon = True
        self._thread.start()
        if not self._started.wait(STOP_TIMEOUT) or self._scope is None:
            raise OSError(f"the WebSocket server on {self.path} did not start")
        log.info("WebSocket serving on %s", self.path)

    def _run(self, sock: socket.socket) -> None:
        try:
            trio.run(self._main, sock)
        except BaseException:
            log.exception("the WebSocket server failed")
        finally:
            sock.close()
            self._started.set()  # start() must not wait for a server that failed

    async def _main(self, sock: socket.socket) -> None:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        # Each connection holds a thread waiting for its events: trio's default
        # limit (40 threads) would stall every other blocking call behind them.
        self._threads = trio.CapacityLimiter(math.inf)
        with trio.CancelScope() as scope:
            self._token, self._scope = trio.lowlevel.current_trio_token(), scope
            self._started.set()
            await trio.serve_listeners(self._connection, [listener])

    async def _connection(self, stream: trio.SocketStream) -> None:
        # Any failure ends this connection only, never the server.
        try:
            async with trio.open_nursery() as nursery:
                if not self.connections.try_take():
                    await self._refuse(nursery, stream)
                    return
                try:
                    await self._serve(nursery, stream)
                finally:
                    self.connections.give_back()
        except Exception as exc:
            if _client_gone(exc):
                log.debug("WebSocket client went away: %r", exc)
            else:
                log.exception("WebSocket connection failed")
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()

    async def _serve(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        ws: WebSocketConnection | None = None
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            request = await wrap_server_stream(nursery, stream)
            ws = await request.accept()
        if ws is None:
            nursery.cancel_scope.cancel()
            return
        try:
            await Client(self.hub, self.components, ws, self._threads).serve()
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT):
                await ws.aclose()
            nursery.cancel_scope.cancel()

    async def _refuse(self, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
        """Beyond runtime.max_websocket_connections: HTTP 503 instead of the upgrade."""
        body = json.dumps({"error": self.connections.refusal()}).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            request = await wrap_server_stream(nursery, stream)
            await request.reject(503, extra_headers=headers, body=body)
        nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop serving (connections still open are dropped) and remove the socket."""
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
