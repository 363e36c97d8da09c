"""Layotto's actuator endpoints, served by the supervisor on the HTTP listener.

The supervisor knows every process's state and each worker's component
health, so it answers directly; the listener therefore survives anything
that happens to the children. HTTP parsing is h11's (already a dependency
of trio-websocket), not ours.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import h11
import trio

from layotto.supervisor import health
from layotto.supervisor.arbiter import Arbiter

log = logging.getLogger("layotto.actuator")

VERSION = "0.1.0"
_MAX_REQUEST = 16384


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
            ],
        }
    return (200 if ok else 503), {"status": "UP" if ok else "DOWN", "components": components}


async def _serve_one(arbiter: Arbiter, stream: trio.SocketStream) -> None:
    async with stream:
        conn = h11.Connection(h11.SERVER)
        with trio.move_on_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(4096)
                    if len(data) > _MAX_REQUEST:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    status, body = route(arbiter, event.method.decode(), event.target.decode())
                    payload = json.dumps(body).encode()
                    headers = [
                        ("content-type", "application/json"),
                        ("content-length", str(len(payload))),
                        ("connection", "close"),
                    ]
                    await stream.send_all(
                        conn.send(h11.Response(status_code=status, headers=headers)) or b""
                    )
                    if event.method != b"HEAD":
                        await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
                    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                return


async def serve_actuator(arbiter: Arbiter, listener: trio.SocketListener) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _serve_one(arbiter, stream)
        except (h11.RemoteProtocolError, trio.BrokenResourceError) as exc:
            log.debug("actuator client error: %s", exc)

    await trio.serve_listeners(handle, [listener])
