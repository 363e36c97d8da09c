"""The bindings' component metadata, parsed without importing urllib3 or redis-py.

The worker's backends read their settings with these; the supervisor runs the
same readers at config load (``registry``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from layotto.components.errors import InvalidRequestError, MetadataError
from layotto.components.metadata import of_component


def url(metadata: Mapping[str, str], component: str) -> str:
    """``url`` of an http binding: an absolute http or https URL."""
    raw = metadata.get("url")
    if raw is None:
        raise InvalidRequestError(f"{of_component(component)} url is required")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MetadataError(of_component(component), "url", "an http:// or https:// URL", raw)
    return raw.strip()


def root_path(metadata: Mapping[str, str], component: str) -> str:
    """``rootPath`` of a localstorage binding: an absolute directory path."""
    raw = metadata.get("rootPath")
    if raw is None:
        raise InvalidRequestError(f"{of_component(component)} rootPath is required")
    if not os.path.isabs(raw):
        raise MetadataError(of_component(component), "rootPath", "an absolute path", raw)
    return os.path.normpath(raw)
