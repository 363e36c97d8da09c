"""The one place that turns component metadata into a Redis client.

Every Redis backend (state, lock, sequencer, configuration, pub/sub) shares
the metadata keys of ``registry._REDIS_KEYS``; parsing them here keeps the
error messages (which key, which component) and the retry/timeout policy
identical, and ``translated`` keeps redis-py's error types out of the
backends' callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from layotto.components.errors import BackendUnavailableError, ComponentError
from layotto.components.metadata import parse_address, parse_bool, parse_int


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
