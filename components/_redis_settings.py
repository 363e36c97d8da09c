"""The metadata every Redis backend shares, parsed without importing redis-py.

``_redis.connect`` builds its client from these in the worker; the supervisor
runs the same readers at config load (through ``registry``), where redis-py
must never be imported.
"""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components.metadata import Read, free_text, parse_address, parse_bool, parse_int


def db(metadata: Mapping[str, str], component: str) -> int:
    return parse_int(metadata, "redisDB", 0, component)


def tls(metadata: Mapping[str, str], component: str) -> bool:
    return parse_bool(metadata, "enableTLS", False, component)


def max_retries(metadata: Mapping[str, str], component: str) -> int:
    return parse_int(metadata, "maxRetries", 3, component)


def max_retry_backoff_ms(metadata: Mapping[str, str], component: str) -> int:
    return parse_int(metadata, "maxRetryBackoff", 2000, component)


def dial_timeout_ms(metadata: Mapping[str, str], component: str) -> int:
    return parse_int(metadata, "dialTimeout", 2000, component, minimum=1)


def read_timeout_ms(metadata: Mapping[str, str], component: str) -> int:
    return parse_int(metadata, "readTimeout", 3000, component, minimum=1)


READERS: Mapping[str, Read] = {
    "redisHost": parse_address,
    "redisPassword": free_text,
    "redisUsername": free_text,
    "redisDB": db,
    "enableTLS": tls,
    "maxRetries": max_retries,
    "maxRetryBackoff": max_retry_backoff_ms,
    "dialTimeout": dial_timeout_ms,
    "readTimeout": read_timeout_ms,
}
