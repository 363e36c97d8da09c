"""The one place that turns component metadata into a Redis client.

Every Redis backend (state, lock, sequencer) shares the metadata keys of
``registry._REDIS_KEYS``; parsing them here keeps the error messages (which key,
which component) and the retry/timeout policy identical, and ``translated``
keeps redis-py's error types out of the backends' callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from layotto.components.errors import BackendUnavailableError, ComponentError, InvalidRequestError

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}


def _bad(component: str, key: str, expected: str, value: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"component {component!r}: metadata {key} must be {expected}, got {value!r}"
    )


def parse_int(
    metadata: Mapping[str, str], key: str, default: int, component: str, minimum: int = 0
) -> int:
    """An integer metadata value ≥ ``minimum`` (``default`` when absent)."""
    raw = metadata.get(key)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(component, key, f"an integer ≥ {minimum}", raw) from None
    if value < minimum:
        raise _bad(component, key, f"an integer ≥ {minimum}", raw)
    return value


def parse_bool(metadata: Mapping[str, str], key: str, default: bool, component: str) -> bool:
    """A boolean spelled the way Go's strconv.ParseBool accepts it."""
    raw = metadata.get(key)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise _bad(component, key, "true or false", raw)


def parse_address(metadata: Mapping[str, str], component: str) -> tuple[str, int]:
    """``redisHost`` as (host, port); ``[v6addr]:port`` is accepted too."""
    raw = metadata.get("redisHost")
    if not raw:
        raise InvalidRequestError(f"component {component!r}: metadata redisHost is required")
    host, sep, port_text = raw.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(component, "redisHost", '"host:port"', raw)
    return host, int(port_text)


def connect(metadata: Mapping[str, str], component: str) -> redis.Redis:
    """A pooled, thread-safe client; no connection is made until the first command."""
    host, port = parse_address(metadata, component)
    retries = parse_int(metadata, "maxRetries", 3, component)
    backoff_ms = parse_int(metadata, "maxRetryBackoff", 2000, component)
    dial_ms = parse_int(metadata, "dialTimeout", 2000, component, minimum=1)
    read_ms = parse_int(metadata, "readTimeout", 3000, component, minimum=1)
    retry = (
        Retry(ExponentialBackoff(cap=backoff_ms / 1000), retries)
        if retries
        else Retry(NoBackoff(), 0)
    )
    return redis.Redis(
        host=host,
        port=port,
        db=parse_int(metadata, "redisDB", 0, component),
        username=metadata.get("redisUsername") or None,
        password=metadata.get("redisPassword") or None,
        ssl=parse_bool(metadata, "enableTLS", False, component),
        socket_connect_timeout=dial_ms / 1000,
        socket_timeout=read_ms / 1000,
        retry=retry,
    )


def unavailable(exc: BaseException, address: str) -> BackendUnavailableError:
    return BackendUnavailableError(f"redis at {address}: {exc}")


@contextmanager
def translated(address: str) -> Iterator[None]:
    """redis-py errors as component errors: unreachable (UNAVAILABLE, retrying
    may help) apart from what the server refused (INTERNAL, it will not)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise unavailable(exc, address) from exc
    except redis.RedisError as exc:
        raise ComponentError(f"redis at {address} failed: {exc}") from exc
