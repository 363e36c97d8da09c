"""The pub/sub building block: the contract every backend meets.

The model is Redis Streams' consumer groups, which the in-memory backend
copies: a topic is an append-only log; each consumer group (an app id, or
``consumerID`` metadata) reads every message once between its consumers;
a message read by a consumer stays *pending* on it until acknowledged, and a
pending message whose consumer went quiet can be claimed by another one.
That is what gives at-least-once delivery: the worker acknowledges only after
the app said SUCCESS or DROP.

Each pending message has a delivery count, kept by the backend (Redis:
XPENDING's "times delivered"), so it survives a restart of the worker that
counts: a read counts one delivery (``read_new`` 1; ``read_pending`` and
``claim_idle`` one more), ``record_retry`` one more, and ``release`` with
``undo_read`` takes back the one of a read whose message was never handed
on. The worker gives an event up to its dead-letter topic on that count.

Message ``data`` is opaque here (the worker stores a CloudEvents envelope).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from layotto.components.errors import InvalidRequestError

MESSAGE_ID = re.compile(r"([0-9]+)(?:-([0-9]+))?")  # a stream id: "<ms>-<seq>" or "<ms>"


@dataclass(frozen=True)
class Message:
    id: str  # backend id, unique per topic, increasing in publish order
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    deliveries: int = 1  # times the group delivered it, the read that returned it included


class PubSub(Protocol):
    """Blocking and thread-safe. Groups are created on first use."""

    def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> str:
        """Append to the topic; returns the new message's id."""
        ...

    def read_new(
        self, topic: str, group: str, consumer: str, count: int, block_seconds: float
    ) -> list[Message]:
        """Up to ``count`` messages never read by the group, in publish order;
        they become pending on ``consumer``. Waits up to ``block_seconds``
        when there is none (0 = do not wait)."""
        ...

    def read_pending(self, topic: str, group: str, consumer: str, count: int) -> list[Message]:
        """Messages pending on ``consumer`` itself (read, not acknowledged),
        oldest first: what a restarted consumer of the same name must redo."""
        ...

    def claim_idle(
        self, topic: str, group: str, consumer: str, min_idle_seconds: float, count: int
    ) -> list[Message]:
        """Move to ``consumer`` messages pending on any consumer for at least
        ``min_idle_seconds`` and return them (a dead consumer's leftovers)."""
        ...

    def record_retry(self, topic: str, group: str, consumer: str, message_id: str) -> int:
        """A message pending on ``consumer`` is about to be delivered again:
        count one more delivery and reset its idle time (a delivery that is
        still being retried must not be claimed by another consumer). Returns
        its delivery count now; 0 when it is not pending on ``consumer`` (it
        was acknowledged, or another consumer claimed it)."""
        ...

    def release(
        self,
        topic: str,
        group: str,
        consumer: str,
        ids: Sequence[str],
        *,
        undo_read: bool = False,
    ) -> None:
        """Give up messages pending on ``consumer`` (it stops before finishing
        them): the next ``claim_idle`` of any consumer takes them, whatever its
        ``min_idle_seconds``. They stay pending until then. ``undo_read``: they
        were read but never delivered, so their delivery count goes down by one
        (not below 0); the claim will count it again."""
        ...

    def forget_consumer(self, topic: str, group: str, consumer: str) -> None:
        """Drop ``consumer`` from the group if nothing is pending on it (a
        consumer that stopped for good); otherwise keep it, so its messages
        can still be claimed."""
        ...

    def ack(self, topic: str, group: str, ids: Sequence[str]) -> None:
        """Done with these messages: they are never delivered to the group again."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def check_ids(ids: Sequence[str]) -> None:
    """Reject what is not a stream id (``"<ms>-<seq>"`` or ``"<ms>"``), as Redis does."""
    for message_id in ids:
        if not MESSAGE_ID.fullmatch(message_id):
            raise InvalidRequestError(f"not a message id: {message_id!r}")


def check_count(count: int) -> None:
    if count < 1:
        raise InvalidRequestError(f"count must be ≥ 1, got {count}")
