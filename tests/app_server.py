"""An application's AppCallback gRPC server, for pub/sub tests.

It answers ListTopicSubscriptions with ``topics`` and records every
OnTopicEvent; ``decide`` chooses the answer per event (SUCCESS by default),
and may block (a slow app) or raise (an app error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from layotto.proto import appcallback_pb2 as cb
from layotto.proto import appcallback_pb2_grpc
from tests.redis_server import free_port

SUCCESS = cb.TopicEventResponse.SUCCESS
RETRY = cb.TopicEventResponse.RETRY
DROP = cb.TopicEventResponse.DROP


class App(appcallback_pb2_grpc.AppCallbackServicer):
    def __init__(self, pubsub: str, topics: list[str], port: int | None = None) -> None:
        self.pubsub = pubsub
        self.topics = list(topics)
        self.port = port or free_port()
        self.events: list[cb.TopicEventRequest] = []
        self.listed = 0
        self.decide: Callable[[cb.TopicEventRequest], int] = lambda event: SUCCESS
        self._changed = threading.Condition()
        self._server: grpc.Server | None = None

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        with self._changed:
            self.listed += 1
            self._changed.notify_all()
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[
                cb.TopicSubscription(pubsub_name=self.pubsub, topic=t) for t in self.topics
            ]
        )

    def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> Any:
        with self._changed:
            self.events.append(request)
            self._changed.notify_all()
        return cb.TopicEventResponse(status=self.decide(request))  # type: ignore[arg-type]

    def start(self) -> App:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0).wait()
            self._server = None

    def data(self, topic: str | None = None) -> list[bytes]:
        with self._changed:
            return [e.data for e in self.events if topic is None or e.topic == topic]

    def wait_until(self, condition: Callable[[App], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition(self):
                remaining = deadline - time.monotonic()
                assert remaining > 0, (
                    f"app condition not met; events: {[e.data for e in self.events]}"
                )
                self._changed.wait(min(remaining, 0.5))
