"""Dapr's ``bindings.redis``: create (SET, with ``ttlInSeconds``), get and delete of ``key``."""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components import _redis
from layotto.components.bindings.base import BindingResponse, required
from layotto.components.errors import InvalidRequestError


class RedisBinding:
    operations = ("create", "get", "delete")

    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._client = _redis.connect(metadata, component)
        self._address = metadata["redisHost"]
        self._probe = _redis.Probe(self._client, self._address)

    def invoke(self, operation: str, data: bytes, metadata: Mapping[str, str]) -> BindingResponse:
        key = required(metadata, "key", operation)
        with _redis.translated(self._address):
            if operation == "create":
                self._client.set(key, data, ex=_ttl(metadata))
                return BindingResponse()
            if operation == "get":
                found = self._client.get(key)
                return BindingResponse(found if isinstance(found, bytes) else b"")
            self._client.delete(key)
            return BindingResponse()

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        self._client.close()
        self._probe.close()


def _ttl(metadata: Mapping[str, str]) -> int | None:
    raw = metadata.get("ttlInSeconds", "")
    if not raw:
        return None
    try:
        ttl = int(raw.strip())
    except ValueError:
        ttl = 0
    if ttl <= 0:
        raise InvalidRequestError(f"metadata ttlInSeconds must be an integer > 0, got {raw!r}")
    return ttl


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisBinding:
    return RedisBinding(metadata, name)
