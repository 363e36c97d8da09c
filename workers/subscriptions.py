"""A worker's open subscriptions: mailboxes the API process long-polls.

A subscription (a configuration watch, or a topic consumed by a streaming
client) produces events inside the worker; the API process that opened it
collects them with ``PollEvents``, one long poll per worker slot for all its
subscriptions. Nothing here pushes to the API: a poll that finds a
subscription gone tells the API to open it again, which is how a worker
restart or a hot upgrade is survived without a lost event.

Each subscription holds a lease renewed by every poll that names it: when the
API process that opened it dies, nobody polls, and the lease expiry closes
it (a topic consumer then leaves its unacknowledged message pending, to be
redelivered).

The API names each subscription (its pid and a key of its own): opening one
that this worker still holds under the same name replaces it. That is the
API reopening a subscription it believed lost (a poll that failed while the
worker still held it); without the name, the worker's own copy made the
reopen fail with ALREADY_EXISTS until its lease ran out.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

LEASE_SECONDS = 10.0
MAX_WAIT_SECONDS = 5.0


class Mailbox:
    """Events of one subscription waiting to be polled, and the app's answers."""

    def __init__(
        self, sub_id: int, owner: int, changed: threading.Condition, key: str = ""
    ) -> None:
        self.id = sub_id
        self.owner = owner  # pid of the API process that opened it
        self.key = key  # the API's name for it ("": unnamed, never replaced)
        self.closed = False
        self.lease_until = time.monotonic() + LEASE_SECONDS
        self._changed = changed
        self._events: deque[bytes] = deque()
        self._answers: dict[str, int] = {}
        self._on_close: list[Callable[[], None]] = []

    def put(self, event: bytes) -> None:
        with self._changed:
            if not self.closed:
                self._events.append(event)
                self._changed.notify_all()

    def take(self) -> list[bytes]:
        """Everything queued (caller holds the condition)."""
        events = list(self._events)
        self._events.clear()
        return events

    def has_events(self) -> bool:
        return bool(self._events)

    def answer(self, event_id: str, status: int) -> None:
        with self._changed:
            self._answers[event_id] = status
            self._changed.notify_all()

    def wait_answer(self, event_id: str) -> int | None:
        """The app's status for this event; None once the subscription closed."""
        with self._changed:
            while True:
                if event_id in self._answers:
                    return self._answers.pop(event_id)
                if self.closed:
                    return None
                self._changed.wait()

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)


class Subscriptions:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._open: dict[int, Mailbox] = {}
        self._ids = itertools.count(1)

    def open(self, owner: int, key: str = "") -> Mailbox:
        # A killed API process's subscriptions go first: its clients are
        # subscribing again right now, and must find their topics free.
        self._close_orphans()
        if key:  # the same subscription opened again by its API: replaced
            with self._changed:
                same = [i for i, m in self._open.items() if (m.owner, m.key) == (owner, key)]
            for sub_id in same:
                self.close(sub_id)
        with self._changed:
            mailbox = Mailbox(next(self._ids), owner, self._changed, key)
            self._open[mailbox.id] = mailbox
            return mailbox

    def get(self, sub_id: int) -> Mailbox | None:
        with self._changed:
            return self._open.get(sub_id)

    def close(self, sub_id: int) -> None:
        with self._changed:
            mailbox = self._open.pop(sub_id, None)
            if mailbox is None:
                return
            mailbox.closed = True
            self._changed.notify_all()
        for callback in mailbox._on_close:
            callback()

    def close_all(self) -> None:
        with self._changed:
            ids = list(self._open)
        for sub_id in ids:
            self.close(sub_id)

    def poll(self, ids: Iterable[int], wait: float) -> tuple[dict[int, list[bytes]], list[int]]:
        """Events of these subscriptions (waiting up to ``wait`` for one), and
        the ids this worker does not know (closed, expired, or never opened here)."""
        wanted = set(ids)
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        with self._changed:
            while True:
                now = time.monotonic()
                known = [self._open[i] for i in wanted if i in self._open]
                for mailbox in known:
                    mailbox.lease_until = now + LEASE_SECONDS
                gone = [i for i in wanted if i not in self._open]
                ready = {m.id: m.take() for m in known if m.has_events()}
                if ready or gone or now >= deadline:
                    break
                self._changed.wait(deadline - now)
        self._expire_leases()
        return ready, gone

    def _expire_leases(self) -> None:
        now = time.monotonic()
        with self._changed:
            expired = [i for i, m in self._open.items() if m.lease_until < now]
        for sub_id in expired:
            self.close(sub_id)

    def _close_orphans(self) -> None:
        """Close the subscriptions of API processes that died (killed, crashed)
        without waiting for their leases."""
        with self._changed:
            owners = {m.owner for m in self._open.values()}
            dead = {pid for pid in owners if not _alive(pid)}
            orphans = [i for i, m in self._open.items() if m.owner in dead]
        for sub_id in orphans:
            self.close(sub_id)

    def expire_leases_forever(self, stop: threading.Event) -> None:
        """Close subscriptions whose API went away even when nobody polls at all."""
        while not stop.wait(LEASE_SECONDS / 2):
            self._expire_leases()

    # Method handlers shared by the blocks that host subscriptions.

    def handle_poll(self, payload: bytes) -> bytes:
        request = json.loads(payload)
        ready, gone = self.poll(request["subs"], float(request.get("wait", 1.0)))
        events = {
            str(sub_id): [base64.b64encode(e).decode() for e in batch]
            for sub_id, batch in ready.items()
        }
        return json.dumps({"events": events, "gone": gone}).encode()

    def handle_close(self, payload: bytes) -> bytes:
        self.close(int(json.loads(payload)["sub"]))
        return b""


def _alive(pid: int) -> bool:
    """API processes are children of this machine's sidecar and are reaped
    at once, so a pid that does not exist means that process is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_request(payload: bytes) -> tuple[int, str, bytes]:
    """OpenSubscription's payload: (owner pid, its name for the subscription,
    the subscription request bytes)."""
    request = json.loads(payload)
    return int(request["owner"]), str(request.get("key", "")), base64.b64decode(request["request"])


def opened(mailbox: Mailbox) -> bytes:
    """The reply to OpenSubscription."""
    return json.dumps({"sub": mailbox.id}).encode()
