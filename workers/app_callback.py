"""The sidecar's client of the app's AppCallback gRPC server (pub/sub delivery).

The reply statuses follow Layotto's retry strategy for AppCallback: SUCCESS
acknowledges; DROP acknowledges with a warning; RETRY, an unknown status or
any gRPC error redelivers; UNIMPLEMENTED drops (the app cannot take events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
from google.protobuf import empty_pb2

from layotto.proto import appcallback_pb2 as cb

log = logging.getLogger("layotto.worker.callback")

SUCCESS = cb.TopicEventResponse.SUCCESS
RETRY = cb.TopicEventResponse.RETRY
DROP = cb.TopicEventResponse.DROP

_SERVICE = "/spec.proto.runtime.v1.AppCallback/"
_NAMES: dict[int, str] = {RETRY: "RETRY", DROP: "DROP"}


class Answer(NamedTuple):
    """How one delivery ended: SUCCESS, RETRY or DROP, and why when not SUCCESS
    (kept with an event that goes to its dead-letter topic)."""

    status: int
    error: str = ""


def outcome(status: int) -> int:
    """An app's answer as SUCCESS, RETRY or DROP (an unknown value retries)."""
    return status if status in (SUCCESS, RETRY, DROP) else RETRY


def answered(status: int, who: str) -> Answer:
    """``who``'s answer ``status`` as an Answer that says what was answered."""
    decided = outcome(status)
    if decided == SUCCESS:
        return Answer(SUCCESS)
    name = _NAMES.get(status, f"status {status}")  # an unknown status retries
    return Answer(decided, f"{who} answered {name}")


class AppCallback:
    def __init__(self, target: str) -> None:
        self.target = target
        self._channel = grpc.insecure_channel(target)
        self._list: Callable[..., Any] = self._channel.unary_unary(
            _SERVICE + "ListTopicSubscriptions",
            request_serializer=empty_pb2.Empty.SerializeToString,
            response_deserializer=cb.ListTopicSubscriptionsResponse.FromString,
        )
        self._deliver: Callable[..., Any] = self._channel.unary_unary(
            _SERVICE + "OnTopicEvent",
            request_serializer=cb.TopicEventRequest.SerializeToString,
            response_deserializer=cb.TopicEventResponse.FromString,
        )

    def subscriptions(self, timeout: float) -> list[cb.TopicSubscription]:
        """What the app subscribes to; raises grpc.RpcError while it is not up."""
        response: cb.ListTopicSubscriptionsResponse = self._list(empty_pb2.Empty(), timeout=timeout)
        return list(response.subscriptions)

    def deliver(self, event: cb.TopicEventRequest, timeout: float) -> Answer:
        try:
            response: cb.TopicEventResponse = self._deliver(event, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.UNIMPLEMENTED:
                log.warning(
                    "app at %s does not implement OnTopicEvent: event %s dropped",
                    self.target,
                    event.id,
                )
                return Answer(DROP, "the app does not implement OnTopicEvent")
            log.info(
                "delivery of event %s to %s failed (%s): will retry", event.id, self.target, code
            )
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            name = code.name if code is not None else "error"
            return Answer(RETRY, f"OnTopicEvent at {self.target} failed: {name}: {details}")
        answer = answered(response.status, "the app")
        if answer.status == DROP:
            log.warning("app dropped event %s of topic %s", event.id, event.topic)
        return answer

    def close(self) -> None:
        self._channel.close()
