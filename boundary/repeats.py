"""Which calls are safe to repeat, and the answer a repeat gives the caller.

A call is *repeatable* when running it twice gives the same outcome as
running it once. Then a worker that dies holding it (the API cannot tell
whether it ran) costs the caller nothing: the API sends it again, to a live
replica, within the call's deadline, and the caller gets a definite answer
instead of "may or may not have been applied". Declared per rpc in
``boundary/rpcs.py``, with the reason; used by ``api/nng_client.py``; the
table with every rpc's reason is in docs/design.md ("Never run a request
twice, never hang").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from layotto.proto import runtime_pb2 as pb

# The response payload of a repeat -> the answer the caller gets.
Settle = Callable[[bytes], bytes]


def as_answered(payload: bytes) -> bytes:
    return payload


def unlock_settled(payload: bytes) -> bytes:
    """Unlock repeated after a lost attempt, finding no lock: the lost attempt
    released it (or it had expired, which no answer could tell apart now).
    Either way the owner no longer holds it, which is what Unlock is for, so
    the caller gets SUCCESS. LOCK_BELONG_TO_OTHERS is passed on: the lock is
    someone else's now, whoever released ours."""
    response = pb.UnlockResponse.FromString(payload)
    if response.status != pb.UnlockResponse.LOCK_UNEXIST:
        return payload
    return pb.UnlockResponse(status=pb.UnlockResponse.SUCCESS).SerializeToString()


@dataclass(frozen=True)
class Repeatable:
    """Running the call twice gives the same outcome as once."""

    why: str  # one line, for the reader of the declaration
    # How the answer of a repeat (an attempt lost before it) becomes the
    # caller's answer; most calls answer a repeat exactly as a first run.
    settle: Settle = as_answered
