"""Caps on what clients hold open: subscription streams and WebSocket connections.

An open stream holds threads for its whole life (a gRPC pool thread and a
reader for a subscription stream, a trio worker thread for a WebSocket
connection), and its subscriptions hold threads in the workers. Uncapped, 544
streams took every thread of the gRPC pool and every unary call timed out
while readiness said UP. Each kind therefore has a Budget sized by the config
(``runtime.max_streams``, ``runtime.max_websocket_connections``), and the gRPC
pool has its unary threads on top of the streams' (api/main.py): one stream
more than the limit is refused at once, with a message that names the limit
and its config key, and unary calls never wait for a stream.

A refusal is logged at most once a minute (with the number refused since the
last line), never once per refusal: a storm of clients must not become a storm
of log lines. A budget that is full is *saturated*: that is logged when it
starts and ends, and reported to the supervisor (``Saturation``) as the
reason next to the API process's health, which stays UP: unary calls are
served, only new streams are refused. Saturation ends when use falls below
90 % of the limit, so a budget hovering at its limit does not flap.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

log = logging.getLogger("layotto.api.limits")

REFUSAL_LOG_INTERVAL = 60.0
CLEAR_BELOW = 0.9  # of the limit: saturation ends under this


class Budget:
    """How many of one kind of open thing there are, against a limit."""

    def __init__(
        self,
        what: str,
        key: str,
        limit: float,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what  # plural noun: "subscription streams"
        self.key = key  # the config key that sets the limit
        self.limit = limit
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self.in_use = 0
        self.saturated = False
        self._refused_unlogged = 0
        self._next_refusal_log = -math.inf

    @classmethod
    def unlimited(cls, what: str) -> Budget:
        return cls(what, "", math.inf)

    def refusal(self) -> str:
        """What a refused client is told."""
        return (
            f"too many {self.what}: {self.limit} are open, the limit set by {self.key}; "
            "try again later"
        )

    def status(self) -> str:
        """What the supervisor is told while saturated."""
        return f"{self.what} at their limit ({self.key} = {self.limit}): new ones are refused"

    def try_take(self) -> bool:
        """One more, if under the limit; a refusal is counted and logged (rate-limited)."""
        changed = False
        with self._lock:
            if self.in_use < self.limit:
                self.in_use += 1
                if self.in_use >= self.limit and not self.saturated:
                    self.saturated = changed = True
                    log.warning("%s", self.status())
                taken = True
            else:
                taken = False
                self._refused_unlogged += 1
                now = self._clock()
                if now >= self._next_refusal_log:
                    log.warning(
                        "%s (%d refused since this was last logged)",
                        self.refusal(),
                        self._refused_unlogged,
                    )
                    self._refused_unlogged = 0
                    self._next_refusal_log = now + REFUSAL_LOG_INTERVAL
        if changed:
            self._on_change()
        return taken

    def give_back(self) -> None:
        changed = False
        with self._lock:
            self.in_use -= 1
            if self.saturated and self.in_use < self.limit * CLEAR_BELOW:
                self.saturated, changed = False, True
                log.info("%s below their limit again (%d open)", self.what, self.in_use)
        if changed:
            self._on_change()


class Saturation:
    """Reports which budgets are saturated through ``send`` (the control
    link's health event), each change once, in order."""

    def __init__(self, send: Callable[[dict[str, str]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._budgets: list[Budget] = []
        self._last = ""

    def budget(self, what: str, key: str, limit: int) -> Budget:
        budget = Budget(what, key, limit, self.changed)
        self._budgets.append(budget)
        return budget

    def changed(self) -> None:
        with self._lock:  # computed and sent under one lock: the last report is current
            reason = "; ".join(b.status() for b in self._budgets if b.saturated)
            if reason != self._last:
                self._last = reason
                self._send({"event": "health", "status": "UP", "reason": reason})
