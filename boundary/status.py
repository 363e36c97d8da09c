"""Status codes on the worker link, and the one place domain errors become codes.

The numbers are gRPC's (so the API process passes them straight through), but
this module does not import grpc: workers never load it.
"""

from __future__ import annotations

from enum import IntEnum

from layotto.components import errors


class Code(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class CallError(Exception):
    """A request failed with a status code and a message meant for the app."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def code_of(exc: BaseException) -> Code:
    """Layotto's mapping (its gRPC API answers state errors this way): etag
    mismatch is Aborted, bad etag InvalidArgument, an unreachable backend
    Unavailable, the rest Internal."""
    if isinstance(exc, CallError):
        return exc.code
    if isinstance(exc, errors.BulkError):
        causes = {code_of(e.cause) for e in exc.errors}
        return causes.pop() if len(causes) == 1 else Code.ABORTED
    if isinstance(exc, errors.BulkKeyError):
        return code_of(exc.cause)
    if isinstance(exc, errors.ETagMismatchError):
        return Code.ABORTED
    if isinstance(exc, errors.ETagInvalidError | errors.InvalidRequestError):
        return Code.INVALID_ARGUMENT
    if isinstance(exc, errors.OutOfRangeError):
        return Code.OUT_OF_RANGE
    if isinstance(exc, errors.NotSupportedError):
        return Code.UNIMPLEMENTED
    if isinstance(exc, errors.BackendUnavailableError):
        return Code.UNAVAILABLE
    if isinstance(exc, errors.NotFoundError):
        return Code.NOT_FOUND
    return Code.INTERNAL
