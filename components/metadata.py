"""Metadata values as typed settings, with errors that name the component and key.

Kept apart from the Redis client (``_redis``) so that backends which parse
metadata but never talk to Redis (the in-memory pub/sub) do not import
redis-py: a worker forked from a zygote that never imported it is ~10 MiB
lighter for configs without Redis. The supervisor runs these same parsers at
config load (``registry.ComponentType.readers``), so a value a worker would
refuse is a config error, reported before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from layotto.components.errors import InvalidRequestError, MetadataError

_TRUE = {"1", "t", "true"}
_FALSE = {"0", "f", "false"}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}

Read = Callable[[Mapping[str, str], str], object]
"""Parses one metadata key of a component, given (metadata, component name);
raises ``MetadataError`` when the value is bad."""


def of_component(component: str) -> str:
    """How errors about a component's metadata begin."""
    return f"component {component!r}: metadata"


def _bad(component: str, key: str, expected: str, value: str) -> MetadataError:
    return MetadataError(of_component(component), key, expected, value)


def free_text(metadata: Mapping[str, str], component: str) -> None:
    """The reader of a key that takes any string (a password, a greeting)."""


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


def parse_seconds(metadata: Mapping[str, str], key: str, default: float, component: str) -> float:
    """A positive duration: plain seconds, or Dapr's "500ms" / "15s" / "1m"."""
    raw = metadata.get(key)
    if raw is None:
        return default
    text = raw.strip().lower()
    unit = next((u for u in ("ms", "s", "m") if text.endswith(u)), "")
    try:
        value = float(text.removesuffix(unit)) * _UNITS.get(unit, 1.0)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise _bad(
            component, key, 'a positive duration (seconds, or like "500ms", "15s", "1m")', raw
        )
    return value


def parse_address(metadata: Mapping[str, str], component: str) -> tuple[str, int]:
    """``redisHost`` as (host, port); ``[v6addr]:port`` is accepted too."""
    raw = metadata.get("redisHost")
    if raw is None:
        raise InvalidRequestError(f"{of_component(component)} redisHost is required")
    host, sep, port_text = raw.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(component, "redisHost", '"host:port" (or "[ipv6]:port"), port 1..65535', raw)
    return host, int(port_text)
