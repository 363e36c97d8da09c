"""A real HTTP server on loopback for the http binding's tests: it records each
request and answers what the test asks for."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpServer:
    url: str
    seen: list[Seen] = field(default_factory=list)
    # path -> (status, body) answered to every method; others get 200 "ok:<METHOD>"
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        state = self.server.state
        state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        status, reply = state.answers.get(self.path, (200, f"ok:{self.command}".encode()))
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.send_header("X-Echo-Method", self.command)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer
    do_DELETE = do_OPTIONS = do_TRACE = _answer

    def log_message(self, format: str, *args: object) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HttpServer


@contextmanager
def running_http_server() -> Iterator[HttpServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = HttpServer(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="test-http", daemon=True
    )
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
