"""The output bindings building block (Dapr's bindings, as Layotto's InvokeBinding serves them).

A binding takes an operation with data and metadata and answers with data and
metadata. Which operations a binding takes depends on its type; the worker
refuses any other before the binding sees it (``check_operation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from layotto.components.errors import InvalidRequestError


@dataclass(frozen=True)
class BindingResponse:
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


class OutputBinding(Protocol):
    """Blocking and thread-safe."""

    operations: tuple[str, ...]  # what ``invoke`` accepts, in the order error messages list them

    def invoke(self, operation: str, data: bytes, metadata: Mapping[str, str]) -> BindingResponse:
        """Run one of ``operations``; raises component errors."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


def check_operation(binding: str, operation: str, supported: tuple[str, ...]) -> None:
    """An operation the binding's type does not take is the caller's mistake."""
    if operation not in supported:
        raise InvalidRequestError(
            f"binding {binding} does not support operation {operation}. "
            f"supported operations: {', '.join(supported)}"
        )


def required(metadata: Mapping[str, str], key: str, operation: str) -> str:
    """A request metadata value the operation cannot do without."""
    value = metadata.get(key, "")
    if not value:
        raise InvalidRequestError(f"metadata {key} is required for operation {operation}")
    return value
