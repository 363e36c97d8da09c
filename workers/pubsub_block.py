"""The pub/sub block: publishing, and the delivery loops of one worker.

Two kinds of subscriber take messages from this worker:
- the app's AppCallback server: the worker keeps asking the app what it
  subscribes to (the app may start after the sidecar, and may restart with
  other topics) and runs one TopicConsumer per topic of this component;
- a streaming client (SubscribeTopicEvents, WebSocket) through the API
  process: its TopicConsumer delivers into a mailbox the API polls, and
  waits for the client's answer relayed by EventProcessed.

Every replica of the component consumes as a member of the same consumer
group, under a name fixed per worker slot, so replicas share the work and
a restarted worker redoes what its predecessor left unacknowledged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading

import grpc

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components.pubsub import cloudevents
from layotto.components.pubsub.base import PubSub
from layotto.components.pubsub.settings import (
    dead_letter_of,
    dead_letter_topic,
    max_delivery_attempts,
    processing_timeout,
    redeliver_interval,
)
from layotto.proto import appcallback_pb2 as cb
from layotto.proto import runtime_pb2 as pb
from layotto.workers.app_callback import Answer, AppCallback, answered
from layotto.workers.block import SubscriptionBlock
from layotto.workers.delivery import GiveUp, Sink, Stopped, Timing, TopicConsumer, Where
from layotto.workers.subscriptions import Mailbox, open_request, opened

log = logging.getLogger("layotto.worker.pubsub")

APP_RETRY_FIRST, APP_RETRY_MAX = 0.2, 2.0
APP_REFRESH_SECONDS = 5.0
APP_CALL_TIMEOUT = 2.0
DELIVERY_TIMEOUT = 60.0
UNSUBSCRIBE_WAIT = 3.0  # > one blocked read of the topic (1 s)


def consumer_name(worker_address: str) -> str:
    """Stable per worker slot of one sidecar, distinct across hosts and sidecars."""
    digest = hashlib.sha1(worker_address.encode()).hexdigest()[:12]
    return f"{socket.gethostname()}-{digest}"


class PubSubBlock(SubscriptionBlock):
    kind = "pub_subs"

    def __init__(self, spec: WorkerSpec, pubsub: PubSub) -> None:
        super().__init__()
        self.component = pubsub
        self.name = spec.name
        self.group = spec.metadata.get("consumerID") or spec.app_id or spec.name
        self.consumer = consumer_name(spec.address)
        self.timing = Timing(
            processing_timeout(spec.metadata, spec.name),
            redeliver_interval(spec.metadata, spec.name),
        )
        self.give_up = GiveUp(
            max_delivery_attempts(spec.metadata, spec.name),
            dead_letter_topic(spec.metadata, spec.name),
        )
        self.max_event_size = spec.max_event_size
        self._lock = threading.Lock()
        self._consumers: dict[str, TopicConsumer] = {}
        self._latest: dict[str, TopicConsumer] = {}  # per topic, running or stopping
        self._app_topics: set[str] = set()
        self._taken_warned: set[str] = set()
        self._stop = threading.Event()
        self._app = AppCallback(spec.app_callback) if spec.app_callback else None
        if self._app is not None:
            threading.Thread(target=self._follow_app, name="app", daemon=True).start()

    def publish_event(self, payload: bytes) -> bytes:
        request = pb.PublishEventRequest.FromString(payload)
        event = cloudevents.event(
            topic=request.topic,
            pubsub_name=request.pubsub_name,
            data=request.data,
            data_content_type=request.data_content_type,
            metadata=dict(request.metadata),
        )
        self._check_deliverable(event, request.pubsub_name, request.topic)
        self.component.publish(request.topic, cloudevents.dump(event), dict(request.metadata))
        return b""

    def _check_deliverable(self, event: dict[str, object], pubsub_name: str, topic: str) -> None:
        """Refuse an event that no subscriber with gRPC's default limits could
        receive: accepted, it would be redelivered until given up."""
        size = cloudevents.delivered_size(
            event,
            pubsub_name=pubsub_name,
            topic=topic,
            dead_letter_topic=dead_letter_of(self.give_up.dead_letter_topic, topic),
        )
        if size > self.max_event_size:
            raise CallError(
                Code.INVALID_ARGUMENT,
                f"event too large: delivered, it would be a {size}-byte gRPC message (data and "
                "CloudEvents attributes, those of its dead-letter topic included), over the "
                f"limit of {self.max_event_size} bytes (runtime.max_event_size): "
                f"{size - self.max_event_size} bytes too many",
            )

    def _where(self, topic: str) -> Where:
        return Where(self.name, topic, self.group, self.consumer)

    def _new_consumer(self, topic: str, sink: Sink) -> TopicConsumer:
        """Caller holds the lock and starts it."""
        consumer = TopicConsumer(
            self.component,
            self._where(topic),
            sink,
            self.timing,
            self._latest.get(topic),
            give_up=self.give_up,
        )
        self._consumers[topic] = self._latest[topic] = consumer
        return consumer

    # The app's AppCallback subscriptions.

    def _follow_app(self) -> None:
        assert self._app is not None
        delay = APP_RETRY_FIRST
        while not self._stop.is_set():
            try:
                listed = self._app.subscriptions(APP_CALL_TIMEOUT)
            except grpc.RpcError:
                self._stop.wait(delay)  # the app is not up (yet): keep asking
                delay = min(delay * 2, APP_RETRY_MAX)
                continue
            delay = APP_RETRY_FIRST
            self._converge({s.topic for s in listed if s.pubsub_name == self.name and s.topic})
            self._stop.wait(APP_REFRESH_SECONDS)

    def _converge(self, wanted: set[str]) -> None:
        """Consume exactly the topics the app asks for now."""
        app = self._app
        assert app is not None
        with self._lock:
            for topic in sorted(wanted - self._app_topics):
                if topic in self._consumers:
                    if topic not in self._taken_warned:  # the app is listed every 5 s
                        self._taken_warned.add(topic)
                        log.warning(
                            "topic %s has a streaming subscriber here: the app gets it once "
                            "that stream ends",
                            topic,
                        )
                    continue
                self._taken_warned.discard(topic)
                consumer = self._new_consumer(
                    topic, lambda event: app.deliver(event, DELIVERY_TIMEOUT)
                )
                self._app_topics.add(topic)
                consumer.start()
                log.info("delivering topic %s of %s to the app at %s", topic, self.name, app.target)
            gone = [self._consumers.pop(t) for t in self._app_topics - wanted]
            self._app_topics &= wanted
        for consumer in gone:
            consumer.close(timeout=0)

    # Streaming subscribers (through the API process).

    def open_subscription(self, payload: bytes) -> bytes:
        owner, key, raw = open_request(payload)
        initial = pb.SubscribeTopicEventsRequestInitial.FromString(raw)
        topic = initial.topic
        mailbox = self.subscriptions.open(owner, key)
        with self._lock:
            if topic in self._consumers:
                self.subscriptions.close(mailbox.id)
                raise CallError(
                    Code.ALREADY_EXISTS,
                    f"already subscribed to pubsub {self.name!r} topic {topic!r}",
                )
            consumer = self._new_consumer(
                topic, lambda event: self._through_mailbox(mailbox, event)
            )
        mailbox.on_close(lambda: self._unsubscribe(topic, consumer))
        consumer.start()
        return opened(mailbox)

    def _unsubscribe(self, topic: str, consumer: TopicConsumer) -> None:
        with self._lock:
            if self._consumers.get(topic) is consumer:
                del self._consumers[topic]
        # Waited for: the consumer releases what it leaves unacknowledged, and
        # that must be done before the client, told its stream ended,
        # subscribes again (possibly on another worker).
        consumer.close(timeout=UNSUBSCRIBE_WAIT)

    def _through_mailbox(self, mailbox: Mailbox, event: cb.TopicEventRequest) -> Answer:
        mailbox.put(pb.SubscribeTopicEventsResponse(event_message=event).SerializeToString())
        status = mailbox.wait_answer(event.id)
        if status is None:
            raise Stopped
        return answered(status, "the subscriber")

    def event_processed(self, payload: bytes) -> bytes:
        answer = json.loads(payload)
        mailbox = self.subscriptions.get(int(answer["sub"]))
        if mailbox is None:
            raise CallError(Code.NOT_FOUND, "the subscription is closed")
        mailbox.answer(str(answer["id"]), int(answer["status"]))
        return b""

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            consumers = list(self._consumers.values())
        for consumer in consumers:
            consumer.stop.set()  # all wind down at once; the joins below are short
        self.subscriptions.close_all()
        with self._lock:
            self._consumers.clear()
        for consumer in consumers:
            consumer.close()
        if self._app is not None:
            self._app.close()
        self.component.close()
