"""Domain errors raised by components.

They carry no gRPC knowledge: ``layotto.boundary.status`` maps each one to a
status code at the edge, so components stay usable outside the sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence


class ComponentError(Exception):
    """Base class of every error a component raises on purpose."""


class InvalidRequestError(ComponentError):
    """The request itself is wrong (bad key, bad metadata value, ...)."""


class MetadataError(InvalidRequestError):
    """A metadata value its key does not accept. The parts are kept so that
    config validation reports it as key path, expected and found, like any
    other config problem."""

    def __init__(self, where: str, key: str, expected: str, found: str) -> None:
        super().__init__(f"{where} {key} must be {expected}, got {found!r}")
        self.key = key
        self.expected = expected
        self.found = found


class ETagMismatchError(ComponentError):
    """An etag was given and does not match the stored version (or first-write lost)."""


class ETagInvalidError(ComponentError):
    """An etag was given that this store can never produce (not a version number)."""


class NotSupportedError(ComponentError):
    """The backend lacks this feature."""


class OutOfRangeError(ComponentError):
    """The request asks for something past a hard limit (a sequencer key's last id)."""


class NotFoundError(ComponentError):
    """What the request names does not exist (a secret's key)."""


class BackendUnavailableError(ComponentError):
    """The backing service cannot be reached right now; retrying later may work."""


class BulkKeyError(ComponentError):
    """One key of a bulk operation failed; the others may have succeeded."""

    def __init__(self, key: str, cause: ComponentError) -> None:
        super().__init__(f"{key}: {cause}")
        self.key = key
        self.cause = cause


class BulkError(ComponentError):
    """Some keys of a bulk operation failed; every other key was applied."""

    def __init__(self, errors: Sequence[BulkKeyError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)
