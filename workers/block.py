"""What every block shares: answering the calls declared for its kind.

A block wraps one component and answers, per call, ``handler(payload) ->
response bytes``, raising component errors or CallError
(``layotto.boundary.status`` turns those into codes). Which method answers
which call is declared in ``boundary/rpcs.py``; a block class only sets its
``kind`` and defines the methods those declarations name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from layotto.boundary import rpcs
from layotto.boundary.status import CallError, Code
from layotto.workers.subscriptions import Subscriptions


class Block:
    kind: ClassVar[str]  # building block, as declared in boundary/rpcs.py
    component: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A block that lacks a declared handler fails when its module is
        imported, not on the first call."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return  # a base shared by several blocks
        handlers = rpcs.handlers_of(kind)
        if not handlers:
            raise TypeError(f"{cls.__name__}: no rpc is declared for kind {kind!r}")
        missing = [
            f"{handler} (for {name})"
            for name, handler in handlers.items()
            if not callable(getattr(cls, handler, None))
        ]
        if missing:
            raise TypeError(f"{cls.__name__} ({kind}) has no handler {', '.join(missing)}")

    def __init__(self) -> None:
        # call name -> bound handler, as declared for this kind
        self.methods: dict[str, Callable[[bytes], bytes]] = {
            name: getattr(self, handler) for name, handler in rpcs.handlers_of(self.kind).items()
        }

    def handle(self, method: str, payload: bytes) -> bytes:
        handler = self.methods.get(method)
        if handler is None:
            raise CallError(Code.UNIMPLEMENTED, f"{method} is not served by this worker")
        return handler(payload)

    def handle_many(self, calls: Sequence[tuple[str, bytes]]) -> list[bytes | Exception]:
        """Several calls that arrived in one batch; each answer is the
        response or the error that call raised. Blocks may serve some kinds
        of call together (one backend round trip for many)."""
        answers: list[bytes | Exception] = []
        for method, payload in calls:
            try:
                answers.append(self.handle(method, payload))
            except Exception as exc:
                answers.append(exc)
        return answers

    def ping(self) -> None:
        self.component.ping()

    def close(self) -> None:
        self.component.close()


class SubscriptionBlock(Block):
    """A block with subscriptions, which the API process polls on the
    worker's events socket (workers/subscriptions.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions = Subscriptions()

    def poll_events(self, payload: bytes) -> bytes:
        return self.subscriptions.handle_poll(payload)

    def close_subscription(self, payload: bytes) -> bytes:
        return self.subscriptions.handle_close(payload)
