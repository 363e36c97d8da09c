"""Redis state store, compatible with Dapr's ``state.redis`` layout.

Every key is a hash ``{data, version}``; every write (set, delete, bulk, a
transaction) is one Lua script (``_redis_scripts.WRITE``, cached and run with
EVALSHA) that checks etags and writes in one atomic step, TTL included, so
check-and-set holds against any concurrent writer. All redis-py usage of the
state block lives here; its errors leave as ``BackendUnavailableError``
(unreachable) or ``ComponentError`` (anything else the server refused).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from layotto.components.errors import BackendUnavailableError, ComponentError, InvalidRequestError
from layotto.components.state import _redis_scripts
from layotto.components.state._ops import (
    EXPIRE_TIME_KEY,
    Op,
    OpStore,
    Outcome,
    expire_time_text,
    parse_ttl,
)
from layotto.components.state.base import BulkGetItem, Consistency, GetResponse

_Read = tuple[bytes | None, str | None, dict[str, str]]  # data, etag, metadata
_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def _bad(component: str, key: str, expected: str, value: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"component {component!r}: metadata {key} must be {expected}, got {value!r}"
    )


def _int(
    metadata: Mapping[str, str], key: str, default: int, component: str, minimum: int = 0
) -> int:
    raw = metadata.get(key)
    if raw is None:
        return default
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or int(text) < minimum:
        raise _bad(component, key, f"an integer >= {minimum}", raw)
    return int(text)


def _bool(metadata: Mapping[str, str], key: str, component: str) -> bool:
    """Spelled as Go's strconv.ParseBool accepts it (Dapr's metadata parser)."""
    raw = metadata.get(key)
    if raw is None:
        return False
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise _bad(component, key, "true or false", raw)
    return word in _TRUE


def _address(metadata: Mapping[str, str], component: str) -> tuple[str, int]:
    """``redisHost`` as (host, port); ``[v6addr]:port`` is accepted too."""
    raw = metadata.get("redisHost")
    if not raw:
        raise InvalidRequestError(f"component {component!r}: metadata redisHost is required")
    host, sep, port = raw.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad(component, "redisHost", '"host:port"', raw)
    return host, int(port)


def connect(metadata: Mapping[str, str], component: str) -> redis.Redis:
    """A client over a thread-safe connection pool; nothing is dialled until first use."""
    host, port = _address(metadata, component)
    retries = _int(metadata, "maxRetries", 3, component)
    backoff_ms = _int(metadata, "maxRetryBackoff", 2000, component)
    backoff = ExponentialBackoff(cap=backoff_ms / 1000) if retries else NoBackoff()
    return redis.Redis(
        host=host,
        port=port,
        db=_int(metadata, "redisDB", 0, component),
        username=metadata.get("redisUsername") or None,
        password=metadata.get("redisPassword") or None,
        ssl=_bool(metadata, "enableTLS", component),
        socket_connect_timeout=_int(metadata, "dialTimeout", 2000, component, 1) / 1000,
        socket_timeout=_int(metadata, "readTimeout", 3000, component, 1) / 1000,
        retry=Retry(backoff, retries),
        decode_responses=False,
    )


class RedisStateStore(OpStore):
    def __init__(self, client: redis.Redis, address: str, default_ttl: int | None) -> None:
        super().__init__(default_ttl)
        self._client = client
        self._address = address
        self._write = client.register_script(_redis_scripts.WRITE)
        self._read = client.register_script(_redis_scripts.READ)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BackendUnavailableError(f"redis at {self._address} unavailable: {exc}") from exc
        except redis.RedisError as exc:
            raise ComponentError(f"redis at {self._address} failed: {exc}") from exc

    def run(self, ops: Sequence[Op], atomic: bool) -> list[Outcome]:
        args: list[bytes | str] = ["1" if atomic else "0"]
        for op in ops:
            args += [
                "u" if op.upsert else "d",
                "" if op.etag is None else str(op.etag),
                "1" if op.first_write else "0",
                op.data,
                str(op.ttl * 1000) if op.ttl else "0",
            ]
        with self._translated():
            codes: list[int] = self._write(keys=[op.key for op in ops], args=args)
        return [Outcome(code) for code in codes]

    def _read_many(self, keys: Sequence[str]) -> list[_Read]:
        """(data, etag, metadata) per key; data None when the key is absent."""
        if not keys:
            return []
        with self._translated():
            flat: list[Any] = self._read(keys=list(keys))
        now = time.time()
        answers: list[_Read] = []
        for at in range(0, len(flat), 3):
            data, version, pttl = flat[at : at + 3]
            if data is None:
                answers.append((None, None, {}))
                continue
            metadata = {EXPIRE_TIME_KEY: expire_time_text(now + pttl / 1000)} if pttl > 0 else {}
            answers.append((data, None if version is None else version.decode(), metadata))
        return answers

    def get(self, key: str, consistency: Consistency = Consistency.UNSPECIFIED) -> GetResponse:
        data, etag, metadata = self._read_many([key])[0]
        return GetResponse(data, etag, metadata)

    def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        return [
            BulkGetItem(key, data, etag, metadata=metadata)
            for key, (data, etag, metadata) in zip(keys, self._read_many(keys), strict=True)
        ]

    def ping(self) -> None:
        with self._translated():
            self._client.ping()

    def close(self) -> None:
        self._client.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisStateStore:
    default_ttl = parse_ttl(metadata, None, f"component {name!r}: metadata")
    return RedisStateStore(connect(metadata, name), metadata["redisHost"].strip(), default_ttl)
