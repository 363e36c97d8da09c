"""The secrets building block (Layotto's and Dapr's secret store semantics).

A store maps a secret's key to a small map of values: ``{key: value}`` for a
single-valued secret, ``{name: value, ...}`` for a multi-valued one. The
local types (``local.file``, ``local.env``) import nothing but the standard
library: the supervisor reads them directly to resolve ``secret_ref`` at
config load, with this very code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from layotto.components.errors import NotFoundError


class SecretNotFoundError(NotFoundError):
    """The store has no secret with this key (GetSecret answers NOT_FOUND)."""

    def __init__(self, store: str, key: str) -> None:
        super().__init__(f"secret {key!r} not found in secret store {store!r}")
        self.key = key


class SecretStore(Protocol):
    """Read-only secrets. Blocking and thread-safe."""

    def get(self, key: str) -> Mapping[str, str]:
        """The values of secret ``key``; raises SecretNotFoundError."""
        ...

    def bulk_get(self) -> Mapping[str, Mapping[str, str]]:
        """Every secret of the store, key -> its values."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
