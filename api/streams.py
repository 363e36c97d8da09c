"""Long-lived subscriptions: SubscribeConfiguration and SubscribeTopicEvents.

A Session is one client stream. Its subscriptions live in workers (events
arrive through api/event_links.py); when a worker loses one, the session
opens it again on a live replica: a configuration subscription then sends
current values again, and a topic subscription redelivers what was not
acknowledged, so a worker crash or scale-down loses nothing.

A hot upgrade or a stop ends every session with UNAVAILABLE and a message
saying so (``Hub.end_all``): the stream's connection must leave the old
API process, and clients are expected to subscribe again.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.api.event_links import CALL_TIMEOUT, EventLink, Watcher
from layotto.api.limits import Budget
from layotto.api.nng_client import WorkerPool
from layotto.api.routes import Components
from layotto.boundary.addresses import events_address
from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb

log = logging.getLogger("layotto.api.streams")

OPEN_TIMEOUT = 5.0
REOPEN_WITHIN = 15.0
RESTARTING = "layotto is restarting (hot upgrade or stop): subscribe again"
_keys = itertools.count(1)


def check(condition: bool, code: Code, message: str) -> None:
    if not condition:
        raise CallError(code, message)


def topic_subscription(
    components: Components, request: pb.SubscribeTopicEventsRequestInitial
) -> Subscription:
    """A topic subscription, validated as Layotto validates SubscribeTopicEvents."""
    pubsubs = components.get("pub_subs", frozenset())
    check(bool(pubsubs), Code.FAILED_PRECONDITION, "pubsub is not configured")
    check(bool(request.pubsub_name), Code.INVALID_ARGUMENT, "pubsubName is required")
    check(bool(request.topic), Code.INVALID_ARGUMENT, "topic is required")
    check(
        request.pubsub_name in pubsubs,
        Code.INVALID_ARGUMENT,
        f"pubsub {request.pubsub_name} not found",
    )
    # Sticky by topic: reopened on the same replica, the subscription
    # redelivers what that replica's consumer left unacknowledged.
    return Subscription(request.pubsub_name, request.topic, True, request.SerializeToString())


def configuration_subscription(
    components: Components, request: pb.SubscribeConfigurationRequest
) -> Subscription:
    stores = components.get("config_store", frozenset())
    check(bool(stores), Code.FAILED_PRECONDITION, "configuration store is not configured")
    check(
        request.store_name in stores,
        Code.INVALID_ARGUMENT,
        f"configuration store {request.store_name} not found",
    )
    return Subscription(request.store_name, "", False, request.SerializeToString())


@dataclass
class Subscription:
    component: str
    routing_key: str
    sticky: bool
    payload: bytes  # what OpenSubscription was called with, to open it again
    link: EventLink | None = None
    sub_id: int = 0
    # The worker's name for it with this process's pid: opened again, it
    # replaces the worker's copy instead of clashing with it.
    key: str = field(default_factory=lambda: str(next(_keys)))


# ("events", (Subscription, list[bytes])) | ("lost", Subscription) | ("end", CallError)
_Item = tuple[str, Any]


class Session:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.items: queue.Queue[_Item] = queue.Queue()
        self.subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    def open(self, sub: Subscription, deadline: float) -> None:
        """Open ``sub`` on a live worker; raises CallError."""
        address = self.hub.pools[sub.component].pick_address(sub.routing_key, sub.sticky, deadline)
        link = self.hub.link(sub.component, events_address(address))
        timeout = max(0.1, deadline - time.monotonic())
        request = {
            "owner": os.getpid(),
            "key": sub.key,
            "request": base64.b64encode(sub.payload).decode(),
        }
        reply = json.loads(link.call("OpenSubscription", json.dumps(request).encode(), timeout))
        sub.link, sub.sub_id = link, int(reply["sub"])
        with self._lock:
            if sub not in self.subscriptions:
                self.subscriptions.append(sub)
        link.watch(
            sub.sub_id,
            Watcher(
                events=lambda batch: self.items.put(("events", (sub, batch))),
                lost=lambda: self.items.put(("lost", sub)),
            ),
        )

    def reopen(self, sub: Subscription) -> None:
        """After a worker lost ``sub``: open it again, retrying while replicas restart."""
        deadline = time.monotonic() + REOPEN_WITHIN
        while True:
            try:
                self.open(sub, min(deadline, time.monotonic() + OPEN_TIMEOUT))
                return
            except CallError as error:
                if time.monotonic() >= deadline or error.code not in (
                    Code.UNAVAILABLE,
                    Code.ALREADY_EXISTS,  # the lost one may not have expired yet
                    Code.DEADLINE_EXCEEDED,
                ):
                    raise
                time.sleep(0.2)

    def processed(self, sub: Subscription, event_id: str, status: int) -> None:
        """Relay the client's answer to an event. When the subscription has
        moved meanwhile, the event is delivered again instead."""
        if sub.link is None:
            return
        payload = {"sub": sub.sub_id, "id": event_id, "status": status}
        with contextlib.suppress(CallError):
            sub.link.call("EventProcessed", json.dumps(payload).encode(), CALL_TIMEOUT)

    def end(self, error: CallError) -> None:
        self.items.put(("end", error))

    def tagged_events(self, is_active: Callable[[], bool]) -> Iterator[tuple[Subscription, bytes]]:
        """(subscription, event) until the client leaves or the session is
        ended; raises CallError for an end that the client must be told about."""
        while is_active():
            try:
                kind, value = self.items.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "events":
                sub, batch = value
                for event in batch:
                    yield sub, event
            elif kind == "lost":
                self.reopen(value)
            else:
                raise value

    def events(self, is_active: Callable[[], bool]) -> Iterator[bytes]:
        for _sub, event in self.tagged_events(is_active):
            yield event

    def close(self) -> None:
        with self._lock:
            subs, self.subscriptions = self.subscriptions, []
        for sub in subs:
            if sub.link is None:
                continue
            sub.link.unwatch(sub.sub_id)
            sub.link.close_subscription(sub.sub_id)


class Hub:
    """Every session of this API process, and the links they share."""

    def __init__(self, pools: Mapping[str, WorkerPool], streams: Budget | None = None) -> None:
        self.pools = pools
        # the gRPC subscription streams open (WebSocket has its own budget)
        self.streams = streams or Budget.unlimited("subscription streams")
        self._lock = threading.Lock()
        self._links: dict[str, EventLink] = {}
        self._sessions: set[Session] = set()
        self._ending: CallError | None = None

    def link(self, component: str, address: str) -> EventLink:
        with self._lock:
            link = self._links.get(address)
            if link is None:
                link = self._links[address] = EventLink(component, address)
            return link

    def retire_link(self, address: str) -> None:
        """A worker leaves (scale-down): move the subscriptions it holds."""
        with self._lock:
            link = self._links.pop(address, None)
        if link is not None:
            link.retire()

    def session(self) -> Session:
        session = Session(self)
        with self._lock:
            self._sessions.add(session)
            if self._ending is not None:
                session.end(self._ending)
        return session

    def forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.discard(session)
        session.close()

    def end_all(self, error: CallError) -> None:
        """End every stream now and any opened from now on."""
        with self._lock:
            self._ending = error
            sessions = list(self._sessions)
        for session in sessions:
            session.end(error)

    def wait_sessions_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._sessions:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        with self._lock:
            links = list(self._links.values())
        for link in links:
            link.close()
