"""What every state backend shares: request validation and the write front end.

Every write (set, delete, their bulk forms, a transaction) becomes a list of
``Op`` and goes through one backend primitive, ``run(ops, atomic)``, which
checks each op against the state as the earlier ops leave it and answers one
``Outcome`` per op:

- ``atomic=True`` (set, delete, transact): stop at the first failure and apply
  nothing; otherwise apply all, in order.
- ``atomic=False`` (bulk_set, bulk_delete): apply every op that passes its
  check; the failures are reported per key.

Versions start at 1 and grow by one per write; the etag is the version in
decimal. Etags are always checked when given, whatever the concurrency (as
Dapr's in-memory store does); FIRST_WRITE without etag means "only if absent".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from layotto.components.errors import (
    BulkError,
    BulkKeyError,
    ComponentError,
    ETagInvalidError,
    ETagMismatchError,
    InvalidRequestError,
    MetadataError,
)
from layotto.components.metadata import of_component
from layotto.components.state.base import Concurrency, DeleteRequest, SetRequest, TransactionOp

TTL_KEY = "ttlInSeconds"
EXPIRE_TIME_KEY = "ttlExpireTime"
_INTEGER = re.compile(r"-?[0-9]+")
_MAX_TTL = 2**31 - 1  # Dapr's limit (math.MaxInt32)


class Outcome(IntEnum):
    """The answer of a backend for one op (the Redis script returns these numbers)."""

    OK = 0
    MISMATCH = 1  # etag given, key exists with another version
    EXISTS = 2  # first-write without etag, key exists
    MISSING = 3  # etag given, key does not exist


@dataclass(frozen=True)
class Op:
    key: str
    upsert: bool  # False: delete
    etag: int | None = None
    first_write: bool = False
    data: bytes = b""
    ttl: int | None = None  # seconds; None: no expiry (an existing one is removed)


def parse_ttl(
    metadata: Mapping[str, str], default: int | None, component: str | None = None
) -> int | None:
    """``ttlInSeconds`` of a request, or of ``component``'s metadata: positive
    seconds, or None for "no expiry" (-1, 0 or absent)."""
    raw = metadata.get(TTL_KEY, "")
    if raw == "":
        return default
    if not _INTEGER.fullmatch(raw.strip()) or not -1 <= int(raw) <= _MAX_TTL:
        expected = f"an integer from -1 to {_MAX_TTL}"
        if component is None:
            raise InvalidRequestError(f"request metadata {TTL_KEY} must be {expected}, got {raw!r}")
        raise MetadataError(of_component(component), TTL_KEY, expected, raw)
    return int(raw) if int(raw) > 0 else None


def default_ttl(metadata: Mapping[str, str], component: str) -> int | None:
    """The component's ``ttlInSeconds``: the TTL of writes whose request names none."""
    return parse_ttl(metadata, None, component)


def parse_etag(etag: str | None) -> int | None:
    if not etag:  # "" means no etag too, as in Dapr
        return None
    if not etag.isascii() or not etag.isdigit():
        raise ETagInvalidError(f"etag {etag!r} is not a version number")
    return int(etag)


def expire_time_text(unix_seconds: float) -> str:
    """RFC 3339 in UTC with whole seconds, as Dapr formats ``ttlExpireTime``."""
    return datetime.fromtimestamp(unix_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check(op: Op, version: int | None) -> Outcome:
    """Judge ``op`` against the key's current version (None: the key is absent)."""
    if op.etag is not None:
        if version is None:
            return Outcome.MISSING
        return Outcome.OK if op.etag == version else Outcome.MISMATCH
    if op.upsert and op.first_write and version is not None:
        return Outcome.EXISTS
    return Outcome.OK


def failure(op: Op, outcome: Outcome) -> ETagMismatchError:
    if outcome is Outcome.MISSING:
        return ETagMismatchError(f"etag {op.etag} given for {op.key!r}, which does not exist")
    if outcome is Outcome.EXISTS:
        return ETagMismatchError(f"first-write of {op.key!r} lost: the key already exists")
    return ETagMismatchError(f"etag {op.etag} does not match the version of {op.key!r}")


class OpStore:
    """The write half of the StateStore protocol, built on ``run``."""

    def __init__(self, default_ttl: int | None) -> None:
        self._default_ttl = default_ttl

    def run(self, ops: Sequence[Op], atomic: bool) -> list[Outcome]:
        raise NotImplementedError

    def _op(self, request: SetRequest | DeleteRequest) -> Op:
        etag = parse_etag(request.etag)
        if isinstance(request, DeleteRequest):
            return Op(request.key, upsert=False, etag=etag)
        return Op(
            request.key,
            upsert=True,
            etag=etag,
            first_write=request.concurrency is Concurrency.FIRST_WRITE,
            data=bytes(request.value),
            ttl=parse_ttl(request.metadata, self._default_ttl),
        )

    def _all_or_nothing(self, ops: list[Op]) -> None:
        if not ops:
            return
        for op, outcome in zip(ops, self.run(ops, atomic=True), strict=False):
            if outcome is not Outcome.OK:
                raise failure(op, outcome)

    def _each(self, requests: Sequence[SetRequest | DeleteRequest]) -> None:
        errors: dict[int, BulkKeyError] = {}
        ops: list[Op] = []
        positions: list[int] = []
        for position, request in enumerate(requests):
            try:
                ops.append(self._op(request))
                positions.append(position)
            except ComponentError as exc:
                errors[position] = BulkKeyError(request.key, exc)
        outcomes = self.run(ops, atomic=False) if ops else []
        for position, op, outcome in zip(positions, ops, outcomes, strict=True):
            if outcome is not Outcome.OK:
                errors[position] = BulkKeyError(op.key, failure(op, outcome))
        if errors:
            raise BulkError([errors[position] for position in sorted(errors)])

    def set(self, request: SetRequest) -> None:
        self._all_or_nothing([self._op(request)])

    def delete(self, request: DeleteRequest) -> None:
        self._all_or_nothing([self._op(request)])

    def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        self._each(requests)

    def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        self._each(requests)

    def transact(self, operations: Sequence[TransactionOp]) -> None:
        self._all_or_nothing([self._op(operation.request) for operation in operations])
