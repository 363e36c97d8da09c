"""The state building block: data types and the contract every backend meets.

Semantics follow Dapr's state API (etag = version, first-write/last-write,
``ttlInSeconds``), see docs/design.md. Keys reaching a store are already
prefixed by the worker (``layotto.components.keys``); stores never rewrite keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class Concurrency(Enum):
    UNSPECIFIED = ""
    FIRST_WRITE = "first-write"
    LAST_WRITE = "last-write"


class Consistency(Enum):
    UNSPECIFIED = ""
    EVENTUAL = "eventual"
    STRONG = "strong"


@dataclass(frozen=True)
class SetRequest:
    key: str
    value: bytes
    # None means "no etag": the worker turns Layotto's "" and "0" into None.
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency = Concurrency.UNSPECIFIED
    consistency: Consistency = Consistency.UNSPECIFIED


@dataclass(frozen=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency = Concurrency.UNSPECIFIED
    consistency: Consistency = Consistency.UNSPECIFIED


@dataclass(frozen=True)
class GetResponse:
    """A missing key is ``data=None, etag=None`` (not an error)."""

    data: bytes | None
    etag: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BulkGetItem:
    key: str
    data: bytes | None
    etag: str | None
    error: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransactionOp:
    """One step of a transaction; ``request`` is a SetRequest (upsert) or DeleteRequest."""

    request: SetRequest | DeleteRequest


class StateStore(Protocol):
    """Contract of a state backend. Every method is blocking and thread-safe."""

    def get(self, key: str, consistency: Consistency = Consistency.UNSPECIFIED) -> GetResponse: ...

    def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        """One item per requested key, in order; per-key failures go into ``error``."""
        ...

    def set(self, request: SetRequest) -> None:
        """Raise ETagMismatchError / ETagInvalidError / InvalidRequestError."""
        ...

    def delete(self, request: DeleteRequest) -> None:
        """Deleting a missing key without etag is not an error."""
        ...

    def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        """Apply every request that can be applied; raise BulkError naming the others."""
        ...

    def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        """Same partial-success contract as bulk_set."""
        ...

    def transact(self, operations: Sequence[TransactionOp]) -> None:
        """All or nothing, applied in order; an etag mismatch aborts the whole transaction."""
        ...

    def ping(self) -> None:
        """Raise BackendUnavailableError when the backend is unreachable."""
        ...

    def close(self) -> None: ...
