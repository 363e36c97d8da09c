"""The ``http`` invoker: InvokeService as an HTTP request to the service's base URL.

One urllib3 ``PoolManager`` per worker keeps connections alive between calls
(none is opened per call). A service with several base URLs takes them in
turn; one that refuses connections is tried last for ``SKIP_FOR`` seconds.
A call whose connection is refused goes on to the next base URL only when
its verb is idempotent (RFC 9110: GET, HEAD, OPTIONS, PUT, DELETE, TRACE);
anything else fails, naming the base URL, and the app decides.

urllib3 retries nothing here (``retries=False``) and follows no redirect: a
3xx is the service's answer like any other status.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence

import urllib3
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from layotto.components.rpc.base import (
    Answer,
    Call,
    CallTimeoutError,
    RefusedError,
    StatusError,
    TransportError,
    UnknownServiceError,
)
from layotto.components.rpc.settings import Targets, parse_targets

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
SKIP_FOR = 5.0  # seconds a base URL that refused a connection is tried last
CONNECTIONS_PER_HOST = 32  # kept alive per host:port; more at once are opened and dropped
BODY_IN_ERRORS = 200  # characters of a failed answer's body quoted in the error


class _Service:
    """The base URLs of one service id, in turn, refusing ones last."""

    def __init__(self, urls: Sequence[str]) -> None:
        self.urls = tuple(urls)
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._refused_until: dict[str, float] = {}

    def order(self) -> list[str]:
        start = next(self._turn) % len(self.urls)
        turn = self.urls[start:] + self.urls[:start]
        now = time.monotonic()
        with self._lock:
            late = {u for u, until in self._refused_until.items() if until > now}
        return [u for u in turn if u not in late] + [u for u in turn if u in late]

    def refused(self, url: str) -> None:
        with self._lock:
            self._refused_until[url] = time.monotonic() + SKIP_FOR


class HttpInvoker:
    def __init__(self, name: str, targets: Targets) -> None:
        self.name = name
        self._services = {service: _Service(urls) for service, urls in targets.items()}
        self._pool = urllib3.PoolManager(
            num_pools=max(10, sum(len(urls) for urls in targets.values())),
            maxsize=CONNECTIONS_PER_HOST,
            retries=False,
        )

    def invoke(self, call: Call) -> Answer:
        service = self._services.get(call.service)
        if service is None:
            raise UnknownServiceError(
                f"rpc {self.name!r} has no target for service id {call.service!r}"
            )
        deadline = time.monotonic() + call.timeout
        headers = urllib3.HTTPHeaderDict()
        for key, value in call.headers:
            headers.add(key, value)
        if call.content_type:
            headers["Content-Type"] = call.content_type
        path = "/" + call.method.lstrip("/")
        if call.query:
            path += "?" + call.query.lstrip("?")
        refused: list[str] = []
        for base in service.order():
            if refused and call.verb not in IDEMPOTENT:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                response = self._pool.request(
                    call.verb,
                    base + path,
                    body=call.body if call.body or call.verb not in ("GET", "HEAD") else None,
                    headers=headers,
                    timeout=urllib3.Timeout(total=remaining),
                    retries=False,
                    redirect=False,
                )
            except NewConnectionError:  # before its base class, a connect timeout
                service.refused(base)
                refused.append(base)
                continue
            except Urllib3Timeout:
                raise CallTimeoutError(
                    f"service {call.service!r} at {base} did not answer within {call.timeout:.3g} s"
                ) from None
            except HTTPError as exc:
                raise TransportError(
                    f"{call.verb} to service {call.service!r} at {base} broke: {exc}; "
                    "it may or may not have been applied"
                ) from None
            return _answer(call, base, response)
        if not refused:
            raise CallTimeoutError(
                f"service {call.service!r}: no time left for the call ({call.timeout:.3g} s)"
            )
        raise RefusedError(
            f"service {call.service!r}: connection refused (or no route) by {', '.join(refused)}"
            + ("" if call.verb in IDEMPOTENT else f" ({call.verb} is not tried elsewhere)")
        )

    def ping(self) -> None:
        """Nothing to ping: a service that is down fails its own calls, not the component."""

    def close(self) -> None:
        self._pool.clear()


def _answer(call: Call, base: str, response: urllib3.BaseHTTPResponse) -> Answer:
    body = response.data
    if 200 <= response.status < 300:
        return Answer(body, response.headers.get("Content-Type", ""))
    text = body[:BODY_IN_ERRORS].decode(errors="replace")
    raise StatusError(
        response.status,
        f"service {call.service!r} at {base} answered {call.verb} {call.method} "
        f"with HTTP {response.status}: {text!r}",
    )


def create(name: str, metadata: Mapping[str, str], app_id: str) -> HttpInvoker:
    """``rpc_request_timeout`` is read by the rpc block, with the call's deadline."""
    return HttpInvoker(name, parse_targets(metadata, name))
