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


# A health check must tell a hung or gone server within a couple of seconds;
# the data path's timeouts and retries (seconds each, several tries) must not
# apply to it.
HEALTH_TIMEOUT = 1.0


class Probe:
    """Health checks of the server ``client`` talks to, on a connection of
    their own: one try with a short timeout, so a hung server shows DOWN at
    once, and a busy data-path pool neither delays nor is delayed by them."""

    def __init__(self, client: redis.Redis, address: str) -> None:
        pool = client.connection_pool
        settings = dict(pool.connection_kwargs)
        dial = settings.get("socket_connect_timeout") or HEALTH_TIMEOUT
        settings.update(
            socket_timeout=HEALTH_TIMEOUT,
            socket_connect_timeout=min(dial, HEALTH_TIMEOUT),
            retry=Retry(NoBackoff(), 0),
        )
        probe_pool = redis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **settings
        )
        self._client = redis.Redis(connection_pool=probe_pool)
        self._address = address

    def ping(self) -> None:
        with translated(self._address):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()


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
