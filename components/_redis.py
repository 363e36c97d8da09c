"""The one place that turns component metadata into a Redis client.

Every Redis backend (state, lock, sequencer, configuration, pub/sub) shares
the metadata keys of ``registry._REDIS_KEYS``; building every client here from
the readers of ``_redis_settings`` keeps the error messages (which key, which
component) and the retry/timeout policy identical, and ``translated`` keeps
redis-py's error types out of the backends' callers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from layotto.components import _redis_settings as settings
from layotto.components.errors import BackendUnavailableError, ComponentError
from layotto.components.metadata import parse_address


def connect(metadata: Mapping[str, str], component: str) -> redis.Redis:
    """A pooled, thread-safe client; no connection is made until the first command."""
    host, port = parse_address(metadata, component)
    retries = settings.max_retries(metadata, component)
    backoff_ms = settings.max_retry_backoff_ms(metadata, component)
    dial_ms = settings.dial_timeout_ms(metadata, component)
    read_ms = settings.read_timeout_ms(metadata, component)
    retry = (
        Retry(ExponentialBackoff(cap=backoff_ms / 1000), retries)
        if retries
        else Retry(NoBackoff(), 0)
    )
    return redis.Redis(
        host=host,
        port=port,
        db=settings.db(metadata, component),
        username=metadata.get("redisUsername") or None,
        password=metadata.get("redisPassword") or None,
        ssl=settings.tls(metadata, component),
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
