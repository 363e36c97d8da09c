"""The API process's end of the workers' events sockets (subscriptions).

One EventLink per worker slot: calls (open, event processed, close) go on
REQ contexts taken from a small pool (not one per thread: streams come and go
with their threads, and a context kept per thread grew the process by ~1 KiB
per stream for the link's life), and one poller thread long-polls the worker
for every subscription this process holds there. A subscription the worker
no longer knows, or a worker that went away, is reported as *lost* to its
owner, which opens it again (see api/streams.py): that is how a worker crash,
a scale-down or a hot upgrade of the workers is survived.

A poll that times out is *slow*, not lost: the worker still holds the
subscriptions (each poll renews their lease), and reopening them all because
one poll took 6 s closed hundreds of healthy streams. Only a worker that is
gone (its pipe closed) loses them at once; one that answers no poll for
longer than the lease has closed them itself, so they are lost then.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from layotto.boundary.frames import ProtocolError, Reply, decode_reply, encode_request
from layotto.boundary.nng_requester import (
    PeerGoneError,
    ReplyTimeoutError,
    Requester,
    RequestSocket,
)
from layotto.boundary.status import CallError, Code

log = logging.getLogger("layotto.api.events")

POLL_WAIT = 1.0
CALL_TIMEOUT = 5.0
POLL_TIMEOUT = POLL_WAIT + 5
# The workers' subscription lease (workers/subscriptions.py LEASE_SECONDS) and
# a margin: polls unanswered this long mean the worker has closed them.
SLOW_LIMIT = 10.0 + POLL_TIMEOUT
IDLE_REQUESTERS = 8  # contexts kept for reuse; more are closed after their call


class SlowReplyError(CallError):
    """The worker did not answer in time: it may be slow, it is not known to be gone."""


@dataclass(frozen=True)
class Watcher:
    """Who receives a subscription's events: ``events`` for each batch,
    ``lost`` once if the worker dropped it."""

    events: Callable[[list[bytes]], None]
    lost: Callable[[], None]


class EventLink:
    def __init__(self, component: str, address: str, clock: Callable[[], float] = time.monotonic):
        self.component = component
        self.address = address
        self._socket = RequestSocket(address)
        self._clock = clock
        self._lock = threading.Lock()
        self._watchers: dict[int, Watcher] = {}
        self._poller: threading.Thread | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self._idle: list[Requester] = []  # contexts free for the next call
        self._busy: set[Requester] = set()  # contexts in a call (closed by close())

    def requesters(self) -> int:
        """Contexts this link holds open (idle or in a call)."""
        with self._lock:
            return len(self._idle) + len(self._busy)

    def _exchange(self, method: str, payload: bytes, timeout: float) -> Reply:
        """One exchange on a pooled context; raises the requester's errors."""
        with self._lock:
            if self._closed:
                raise PeerGoneError
            requester = self._idle.pop() if self._idle else self._socket.requester()
            self._busy.add(requester)
            request_id = next(self._ids)
        frame = encode_request(method, request_id, time.monotonic() + timeout, payload)
        reusable = False
        try:
            reply = decode_reply(requester.request(frame, max(1, int(timeout * 1000))))
            reusable = True
            return reply
        finally:
            with self._lock:
                self._busy.discard(requester)
                keep = reusable and not self._closed and len(self._idle) < IDLE_REQUESTERS
                if keep:
                    self._idle.append(requester)
            if not keep:
                requester.close()

    def call(self, method: str, payload: bytes, timeout: float) -> bytes:
        """One exchange; raises CallError."""
        try:
            reply = self._exchange(method, payload, timeout)
        except ReplyTimeoutError:
            raise SlowReplyError(
                Code.UNAVAILABLE, f"component {self.component!r} did not answer {method}"
            ) from None
        except PeerGoneError:
            raise CallError(
                Code.UNAVAILABLE, f"the worker of component {self.component!r} went away"
            ) from None
        except ProtocolError as exc:
            raise CallError(Code.INTERNAL, f"bad reply from worker: {exc}") from None
        if reply.code != Code.OK:
            raise CallError(reply.code, reply.payload.decode(errors="replace"))
        return reply.payload

    def watch(self, sub_id: int, watcher: Watcher) -> None:
        with self._lock:
            self._watchers[sub_id] = watcher
            if self._poller is None or not self._poller.is_alive():
                self._poller = threading.Thread(target=self._poll, name="poll", daemon=True)
                self._poller.start()

    def unwatch(self, sub_id: int) -> None:
        with self._lock:
            self._watchers.pop(sub_id, None)

    def _poll(self) -> None:
        answered = self._clock()  # when the worker last answered a poll
        while True:
            with self._lock:
                ids = list(self._watchers)
                if not ids or self._closed:
                    self._poller = None
                    return
            request = json.dumps({"subs": ids, "wait": POLL_WAIT}).encode()
            try:
                raw = self.call("PollEvents", request, POLL_TIMEOUT)
            except CallError as exc:
                if isinstance(exc, SlowReplyError) and self._clock() - answered < SLOW_LIMIT:
                    log.info("events of %s are slow (%s): polling again", self.address, exc.message)
                    continue
                log.info("events of %s lost (%s): subscriptions move", self.address, exc.message)
                self._lose(ids)
                answered = self._clock()  # reopened subscriptions start afresh
                continue
            answered = self._clock()
            reply = json.loads(raw)
            with self._lock:
                watchers = dict(self._watchers)
            for key, batch in reply["events"].items():
                watcher = watchers.get(int(key))
                if watcher is not None:
                    watcher.events([base64.b64decode(e) for e in batch])
            self._lose(reply["gone"])

    def _lose(self, ids: list[int]) -> None:
        with self._lock:
            lost = [self._watchers.pop(i) for i in ids if i in self._watchers]
        for watcher in lost:
            watcher.lost()

    def retire(self) -> None:
        """The worker is being retired (scale-down): close its subscriptions
        there first, so that it releases what it holds, then report them lost
        so their sessions open them on the remaining replicas."""
        with self._lock:
            ids = list(self._watchers)
        for sub_id in ids:
            self.close_subscription(sub_id)
        self._lose(ids)
        self.close()

    def close_subscription(self, sub_id: int) -> None:
        """Best effort: a worker that is gone closes it when its lease expires."""
        with contextlib.suppress(CallError):
            self.call("CloseSubscription", json.dumps({"sub": sub_id}).encode(), CALL_TIMEOUT)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            requesters = [*self._idle, *self._busy]
            self._idle, self._busy = [], set()
        for requester in requesters:
            requester.close()
        self._socket.close()
