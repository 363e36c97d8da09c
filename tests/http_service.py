"""A real HTTP/1.1 service on loopback, for InvokeService tests and the bench.

Every request is answered with JSON saying what arrived (verb, path, query,
headers, body as text) unless its path asks otherwise:

- ``/status/<code>``: that status, body ``failed with <code>: ...`` (text/plain);
- ``/slow/<ms>``: the echo, after sleeping that long;
- ``/raw``: the request body back as it came, with the request's Content-Type.

Keep-alive (HTTP/1.1 with Content-Length), so a pooled client reuses its
connections; ``connections`` counts the connections accepted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: with Nagle on, a kept-alive client's
    # delayed ACK holds the body back ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.requests += 1
        if parts.path.startswith("/status/"):
            status = int(parts.path.rsplit("/", 1)[1])
            self._send(status, f"failed with {status}: {'x' * 400}".encode(), "text/plain")
            return
        if parts.path.startswith("/slow/"):
            time.sleep(int(parts.path.rsplit("/", 1)[1]) / 1000)
        if parts.path == "/raw":
            self._send(200, body, self.headers.get("Content-Type", ""))
            return
        echo = {
            "server": self.server.name,
            "verb": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode(errors="replace"),
        }
        self._send(200, json.dumps(echo).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


HttpService = _Server


@contextmanager
def running_http_service(name: str = "s1") -> Iterator[HttpService]:
    server = _Server(name)
    thread = threading.Thread(target=server.serve_forever, name=f"http-{name}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    """``python -m tests.http_service``: serve until killed (the bench's service,
    in a process of its own); prints its URL once listening."""
    server = _Server("s1")
    print(server.url, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
