"""The ``http`` invoker's metadata, parsed without importing urllib3 (the
supervisor runs these readers at config load, ``components/registry.py``).

``targets`` is JSON text: an object mapping each service id to its base URL
or a list of base URLs, e.g. ``{"echo": "http://127.0.0.1:8080", "orders":
["http://10.0.0.1:80/api", "http://10.0.0.2:80/api"]}``. JSON because a
metadata value is a string, and JSON says lists and maps without a grammar
of our own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from layotto.components.errors import InvalidRequestError, MetadataError
from layotto.components.metadata import of_component, parse_int

TARGETS_KEY = "targets"
TIMEOUT_KEY = "rpc_request_timeout"  # Layotto's key, in ms
DEFAULT_TIMEOUT_MS = 3000

_EXPECTED = (
    'JSON text: an object mapping each service id to a base URL "http://host:port[/path]" '
    "or a non-empty list of them"
)

Targets = Mapping[str, tuple[str, ...]]


def _base_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        return None
    return value.rstrip("/")


def parse_targets(metadata: Mapping[str, str], component: str) -> Targets:
    raw = metadata.get(TARGETS_KEY)
    if raw is None:
        raise InvalidRequestError(f"{of_component(component)} {TARGETS_KEY} is required")
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise MetadataError(of_component(component), TARGETS_KEY, _EXPECTED, raw)
    targets: dict[str, tuple[str, ...]] = {}
    for service, given in document.items():
        urls = [given] if isinstance(given, str) else given
        if not isinstance(urls, list) or not urls:
            raise MetadataError(of_component(component), TARGETS_KEY, _EXPECTED, raw)
        parsed = [_base_url(u) for u in urls]
        good = [u for u in parsed if u is not None]
        if not service or len(good) != len(parsed):
            raise MetadataError(of_component(component), TARGETS_KEY, _EXPECTED, raw)
        targets[service] = tuple(good)
    return targets


def parse_timeout(metadata: Mapping[str, str], component: str) -> float:
    """Seconds: ``rpc_request_timeout`` is milliseconds, ≥ 1."""
    return parse_int(metadata, TIMEOUT_KEY, DEFAULT_TIMEOUT_MS, component, minimum=1) / 1000
