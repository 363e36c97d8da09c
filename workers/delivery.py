"""One topic consumed by one worker: read, deliver, acknowledge, in order.

The loop first redoes what this consumer left pending in an earlier life
(a crash between delivery and acknowledgement), then reads new messages,
and every ``redeliver_interval`` claims messages other consumers left
pending longer than ``processing_timeout`` (a dead sidecar's or worker's).
A message is acknowledged only after the sink's SUCCESS or DROP; on RETRY
it is delivered again with back-off, keeping its place (per-topic order),
and its pending entry is touched so nobody else claims it meanwhile.

No event may hold its topic up for ever: after ``max_attempts`` deliveries,
counted by the backend (so a restarted worker or a re-subscribed stream goes
on counting), it is published to its dead-letter topic with the attempts and
the last error, and acknowledged, and the topic moves on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from layotto.components.errors import ComponentError
from layotto.components.pubsub import cloudevents
from layotto.components.pubsub.base import Message, PubSub
from layotto.components.pubsub.settings import (
    DEAD_LETTER_SUFFIX,
    DEFAULT_MAX_DELIVERY_ATTEMPTS,
    dead_letter_of,
)
from layotto.proto import appcallback_pb2 as cb
from layotto.workers.app_callback import DROP, SUCCESS, Answer

log = logging.getLogger("layotto.worker.delivery")

READ_BATCH = 16
READ_BLOCK_SECONDS = 1.0
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
PREDECESSOR_WAIT = 90.0  # longer than one delivery attempt to the app (60 s)


class Stopped(Exception):
    """The sink can no longer take this message (its subscriber went away)."""


# Delivers one event and says how it went (SUCCESS, RETRY or DROP); raises Stopped.
Sink = Callable[[cb.TopicEventRequest], Answer]


@dataclass(frozen=True)
class Where:
    pubsub_name: str
    topic: str
    group: str
    consumer: str


@dataclass(frozen=True)
class Timing:
    processing_timeout: float = 60.0
    redeliver_interval: float = 15.0


@dataclass(frozen=True)
class GiveUp:
    """When an event stops being retried, and where it goes then."""

    max_attempts: int = DEFAULT_MAX_DELIVERY_ATTEMPTS
    # "{topic}" stands for the event's topic; None: dropped, with an error logged
    dead_letter_topic: str | None = "{topic}" + DEAD_LETTER_SUFFIX


class TopicConsumer:
    def __init__(
        self,
        pubsub: PubSub,
        where: Where,
        sink: Sink,
        timing: Timing,
        predecessor: TopicConsumer | None = None,
        *,
        give_up: GiveUp | None = None,
    ) -> None:
        self.pubsub = pubsub
        # The previous consumer of this topic in this worker, maybe still
        # stopping: it may yet read a message under our shared consumer
        # name, so we start once it is done and then redo what it left.
        self.predecessor = predecessor
        self.where = where
        self.sink = sink
        self.timing = timing
        self.give_up = give_up or GiveUp()
        self.stop = threading.Event()
        self.delivered = 0
        self.given_up = 0
        # (message id, error) of the last failed delivery: the reason to give
        # when that message is given up after a re-read
        self._last_failure: tuple[str, str] | None = None
        self._thread = threading.Thread(target=self._run, name=f"topic {where.topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop reading; a delivery under way finishes (bounded by ``timeout``)."""
        self.stop.set()
        self.join(timeout)

    def join(self, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        if self.predecessor is not None:
            self.predecessor.join(PREDECESSOR_WAIT)
            self.predecessor = None
        self._consume()
        # Stopped for good (a crash never gets here): leave no consumer behind
        # in the group, unless it still holds released messages.
        w = self.where
        try:
            self.pubsub.forget_consumer(w.topic, w.group, w.consumer)
        except ComponentError as exc:
            log.info("topic %s: consumer %s not removed (%s)", w.topic, w.consumer, exc)

    def _consume(self) -> None:
        w = self.where
        backoff = RETRY_FIRST
        own_pending_done = False
        next_claim = time.monotonic()  # at once: a predecessor may have released some
        while not self.stop.is_set():
            try:
                if not own_pending_done:
                    batch = self.pubsub.read_pending(w.topic, w.group, w.consumer, READ_BATCH)
                    own_pending_done = not batch
                elif time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.timing.redeliver_interval
                    batch = self.pubsub.claim_idle(
                        w.topic, w.group, w.consumer, self.timing.processing_timeout, READ_BATCH
                    )
                else:
                    batch = self.pubsub.read_new(
                        w.topic, w.group, w.consumer, READ_BATCH, READ_BLOCK_SECONDS
                    )
                for index, message in enumerate(batch):
                    if self.stop.is_set():
                        self._release(batch[index:], undo_read=True)
                        return
                    if not self._deliver(message):
                        # It was delivered (that counts); those after it were not.
                        self._release([message])
                        self._release(batch[index + 1 :], undo_read=True)
                        return
                backoff = RETRY_FIRST
            except ComponentError as exc:  # backend down: wait, then carry on
                own_pending_done = False  # a message may be left unacknowledged
                log.warning("topic %s: %s; retrying in %.1f s", w.topic, exc, backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX)

    def _release(self, messages: list[Message], undo_read: bool = False) -> None:
        """Stopping with these unacknowledged: let the next consumer of the
        topic (a re-subscribed stream, the next generation's worker) claim
        them at once instead of after processingTimeout. ``undo_read``: they
        were never delivered, so their read does not count as a delivery."""
        if not messages:
            return
        w = self.where
        ids = [m.id for m in messages]
        try:
            self.pubsub.release(w.topic, w.group, w.consumer, ids, undo_read=undo_read)
        except ComponentError as exc:
            log.info("topic %s: %d message(s) not released (%s)", w.topic, len(messages), exc)

    def _deliver(self, message: Message) -> bool:
        """Deliver until acknowledged; False when stopping with it unacknowledged."""
        w = self.where
        if cloudevents.expired(message.data):
            log.info("topic %s: message %s expired before delivery: dropped", w.topic, message.id)
            self.pubsub.ack(w.topic, w.group, [message.id])
            return True
        attempts = message.deliveries  # this one included
        if attempts > self.give_up.max_attempts:
            # Delivered that often already, and never answered for good: a
            # worker, a stream or the dead-letter publish stopped half-way.
            self._give_up(message, attempts - 1, self._reason(message))
            return True
        event = cloudevents.to_topic_event(message.data, pubsub_name=w.pubsub_name, topic=w.topic)
        backoff = RETRY_FIRST
        while True:
            try:
                answer = self.sink(event)
            except Stopped:  # its subscriber went away
                return False
            if answer.status in (SUCCESS, DROP):
                self.pubsub.ack(w.topic, w.group, [message.id])
                self._last_failure = None
                self.delivered += 1
                return True
            self._last_failure = (message.id, answer.error)
            if attempts >= self.give_up.max_attempts:
                self._give_up(message, attempts, answer.error)
                return True
            if self.stop.wait(backoff):
                return False  # stays pending: redone by this consumer or claimed
            backoff = min(backoff * 2, RETRY_MAX)
            attempts = self.pubsub.record_retry(w.topic, w.group, w.consumer, message.id)
            if not attempts:
                log.info(
                    "topic %s: message %s is no longer pending here (acknowledged, or claimed "
                    "by another consumer after processingTimeout): left to it",
                    w.topic,
                    message.id,
                )
                return True

    def _reason(self, message: Message) -> str:
        if self._last_failure is not None and self._last_failure[0] == message.id:
            return self._last_failure[1]
        return "its last delivery ended without an answer (the worker or the subscriber stopped)"

    def _give_up(self, message: Message, attempts: int, error: str) -> None:
        """Move the message to its dead-letter topic (or drop it) and acknowledge
        it, so the topic moves on. A failed publish raises ComponentError: the
        message stays pending and is given up again once re-read."""
        w = self.where
        target = dead_letter_of(self.give_up.dead_letter_topic, w.topic)
        if target is None:
            log.error(
                "topic %s: message %s failed %d deliveries (last: %s); no dead-letter topic: "
                "dropped",
                w.topic,
                message.id,
                attempts,
                error,
            )
        else:
            data = cloudevents.dead_letter(
                message.data,
                pubsub_name=w.pubsub_name,
                topic=w.topic,
                attempts=attempts,
                error=error,
            )
            self.pubsub.publish(target, data, message.metadata)
            log.warning(
                "topic %s: message %s failed %d deliveries (last: %s): moved to topic %s",
                w.topic,
                message.id,
                attempts,
                error,
                target,
            )
        self.pubsub.ack(w.topic, w.group, [message.id])
        self._last_failure = None
        self.given_up += 1
