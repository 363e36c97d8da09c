"""Metadata values as typed settings, with errors that name the component and key.

Kept apart from the Redis client (``_redis``) so that backends which parse
metadata but never talk to Redis (the in-memory pub/sub) do not import
redis-py: a worker forked from a zygote that never imported it is ~10 MiB
lighter for configs without Redis.
"""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components.errors import InvalidRequestError

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
