"""Dapr's ``bindings.http``: one HTTP request per invocation, to ``url``.

The operation is the HTTP method (``create`` is POST); request metadata
``path`` is appended to the URL and every other key becomes a header. The
response's status is in metadata ``statusCode`` (its headers too); a status
outside 2xx is an error that names it.

No health check: the URL is the app's concern, and a HEAD every second to
an outside service would make the sidecar's readiness hang on it (many
servers do not even answer HEAD). A failing call says what failed.
"""

from __future__ import annotations

from collections.abc import Mapping

import urllib3

from layotto.components.bindings import settings
from layotto.components.bindings.base import BindingResponse
from layotto.components.errors import BackendUnavailableError, ComponentError

_METHODS = {
    "create": "POST",
    "get": "GET",
    "head": "HEAD",
    "post": "POST",
    "put": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "options": "OPTIONS",
    "trace": "TRACE",
}
# A request waits at most this long to connect, and this long for each read.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


class HttpBinding:
    operations = tuple(_METHODS)

    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._url = settings.url(metadata, component)
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            retries=False,
        )

    def invoke(self, operation: str, data: bytes, metadata: Mapping[str, str]) -> BindingResponse:
        target = self._url
        path = metadata.get("path", "")
        if path:
            target = target.rstrip("/") + "/" + path.lstrip("/")
        headers = {k: v for k, v in metadata.items() if k != "path"}
        try:
            answer = self._pool.request(
                _METHODS[operation], target, body=data or None, headers=headers
            )
        except urllib3.exceptions.HTTPError as exc:
            raise BackendUnavailableError(f"http {target}: {exc}") from exc
        status = answer.status
        if not 200 <= status < 300:
            raise ComponentError(f"received status code {status} from {target}")
        found = {**dict(answer.headers.items()), "statusCode": str(status)}
        return BindingResponse(answer.data, found)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        self._pool.clear()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> HttpBinding:
    return HttpBinding(metadata, name)
