"""The service invocation building block: InvokeService over a transport.

An invoker calls the service a request's ``id`` names and returns its answer.
What went wrong is said with the errors below, which carry no gRPC
knowledge: the rpc block (``workers/rpc_block.py``) turns them into codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from layotto.components.errors import ComponentError


@dataclass(frozen=True)
class Call:
    service: str  # the request's id: which service
    method: str  # the path under the service's base URL
    verb: str  # GET, POST, ...
    query: str  # encoded query string, without "?"
    body: bytes
    content_type: str  # "" for none
    headers: Sequence[tuple[str, str]]  # from the caller's gRPC metadata, already filtered
    timeout: float  # seconds


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str


class UnknownServiceError(ComponentError):
    """No target is configured for the service id."""


class StatusError(ComponentError):
    """The service answered with a status that is no success."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class RefusedError(ComponentError):
    """No target of the service accepted the connection (the call was not sent)."""


class CallTimeoutError(ComponentError):
    """The service did not answer within the call's timeout."""


class TransportError(ComponentError):
    """The exchange broke after it began: the service may or may not have run it."""


class Invoker(Protocol):
    """Thread-safe: the rpc block runs the calls of a batch concurrently."""

    def invoke(self, call: Call) -> Answer: ...

    def ping(self) -> None: ...

    def close(self) -> None: ...
