"""Layotto's actuator endpoints, served by the supervisor on the HTTP listener.

The supervisor knows every process's state and each worker's component
health, so it answers directly; the listener therefore survives anything
that happens to the children. HTTP parsing is h11's, not ours.

``GET /ws`` with ``Upgrade: websocket`` is not answered here: the connection
is relayed, bytes unchanged, to the WebSocket server of one of the serving
API processes, the first that runs and accepts (each has its own socket;
api/websocket.py, protocol in docs/websocket.md). A hot upgrade closes
such connections (code 1012); clients connect again and reach the new
generation.
"""

from __future__ import annotations

import json
import logging
from importlib import metadata
from typing import Any

import h11
import trio

from layotto.boundary.addresses import websocket_socket
from layotto.boundary.specs import ApiSpec
from layotto.supervisor import health
from layotto.supervisor.arbiter import Arbiter
from layotto.supervisor.http_connections import Connections, connection_limit, serve_http

log = logging.getLogger("layotto.actuator")

# Written once, in pyproject.toml; this is the version pip installed.
VERSION = metadata.version("layotto-py")
_MAX_REQUEST = 16384
# After a stop began, relays are cut this long after the API's grace period.
_STOP_SLACK = 10.0


def route(arbiter: Arbiter, method: str, target: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one request; 200 when UP, 503 otherwise."""
    path = target.split("?", 1)[0].rstrip("/")
    if method not in ("GET", "HEAD"):
        return 405, {"error": f"method {method} not allowed; use GET"}
    if path == "/actuator/health/liveness":
        ok, components = health.liveness(arbiter)
    elif path in ("/actuator/health/readiness", "/actuator/health"):
        ok, components = health.readiness(arbiter)
    elif path == "/actuator/info":
        return 200, {
            "app": {"name": "layotto-py", "version": VERSION, "app_id": arbiter.config.app.app_id}
        }
    else:
        return 404, {
            "error": f"no actuator endpoint {path!r}",
            "endpoints": [
                "/actuator/health/liveness",
                "/actuator/health/readiness",
                "/actuator/info",
                "/ws",
            ],
        }
    return (200 if ok else 503), {"status": "UP" if ok else "DOWN", "components": components}


def _wants_websocket(request: h11.Request) -> bool:
    return any(
        name == b"upgrade" and b"websocket" in {t.strip() for t in value.lower().split(b",")}
        for name, value in request.headers
    )


def _request_head(request: h11.Request) -> bytes:
    """The request line and headers as the client sent them (h11 keeps their case)."""
    lines = [b"%s %s HTTP/1.1" % (request.method, request.target)]
    lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw_items()]
    return b"\r\n".join([*lines, b"", b""])


async def _respond(
    conn: h11.Connection,
    stream: trio.SocketStream,
    request: h11.Request,
    status: int,
    body: dict[str, Any],
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(payload))),
        ("connection", "close"),
    ]
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
    if request.method != b"HEAD":
        await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()  # either side closing ends the relay


async def _relay_websocket(
    arbiter: Arbiter, conn: h11.Connection, client: trio.SocketStream, request: h11.Request
) -> None:
    """Hand the connection to a serving API process's WebSocket server: the
    request head goes there as it came, then bytes flow both ways unchanged."""
    upstream = await _open_websocket_upstream(arbiter)
    if upstream is None:
        with trio.move_on_after(10):
            await _respond(
                conn,
                client,
                request,
                503,
                {"error": "no API process is ready to serve WebSocket; retry later"},
            )
        return
    async with upstream:
        data, _closed = conn.trailing_data
        await upstream.send_all(_request_head(request) + data)
        # A stop stops accepting at once (the listener's tasks are cancelled),
        # but an established relay lasts until the API process has closed it
        # (code 1012: subscribe again), within a limit.
        with trio.CancelScope(shield=True) as relay:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, client, upstream, nursery.cancel_scope)
                nursery.start_soon(_pump, upstream, client, nursery.cancel_scope)
                nursery.start_soon(_limit_on_stop, arbiter, relay)


async def _open_websocket_upstream(arbiter: Arbiter) -> trio.SocketStream | None:
    """A connection to the WebSocket socket of a running API process of the
    serving generation (one that was just killed refuses: the next is tried)."""
    for api in arbiter.apis:
        if not api.up:
            continue
        assert isinstance(api.spec, ApiSpec)
        path = websocket_socket(arbiter.run_dir, api.generation, api.spec.index)
        try:
            return await trio.open_unix_socket(path)
        except OSError as exc:
            log.debug("no WebSocket server at %s: %s", path, exc)
    return None


async def _limit_on_stop(arbiter: Arbiter, relay: trio.CancelScope) -> None:
    await arbiter.stop_begun.wait()
    relay.deadline = trio.current_time() + arbiter.config.runtime.shutdown_grace + _STOP_SLACK


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> h11.Request | None:
    """The request's head; None if the client left or sent something else."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            if len(data) > _MAX_REQUEST:
                return None
            conn.receive_data(data)
            continue
        return event if isinstance(event, h11.Request) else None


async def _serve_one(arbiter: Arbiter, connections: Connections, stream: trio.SocketStream) -> None:
    async with stream:
        conn = h11.Connection(h11.SERVER)
        request = None
        # Until its request is in, a connection is idle: it may be closed to
        # make room for another (see http_connections).
        sock = getattr(stream, "socket", None)  # tests serve in-memory streams
        fd = sock.fileno() if sock is not None else None
        with trio.move_on_after(10), connections.waiting(fd):
            request = await _read_request(conn, stream)
        if request is None:
            return
        path = request.target.decode().split("?", 1)[0].rstrip("/")
        if path == "/ws" and _wants_websocket(request):
            await _relay_websocket(arbiter, conn, stream, request)  # no time limit
            return
        if path == "/ws":
            status, body = 400, {"error": "/ws needs a WebSocket upgrade request"}
        else:
            status, body = route(arbiter, request.method.decode(), request.target.decode())
        with trio.move_on_after(10):
            await _respond(conn, stream, request, status, body)


async def serve_actuator(arbiter: Arbiter, listener: trio.SocketListener) -> None:
    connections = Connections(connection_limit(arbiter.config.runtime.max_http_connections))

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _serve_one(arbiter, connections, stream)
        except (h11.RemoteProtocolError, trio.BrokenResourceError) as exc:
            log.debug("actuator client error: %s", exc)

    await serve_http(listener, connections, handle)
