"""The sidecar's client of the app's AppCallback gRPC server (pub/sub delivery).

The reply statuses follow Layotto's retry strategy for AppCallback: SUCCESS
acknowledges; DROP acknowledges with a warning; RETRY, an unknown status or
any gRPC error redelivers; UNIMPLEMENTED drops (the app cannot take events).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2

from layotto.proto import appcallback_pb2 as cb

log = logging.getLogger("layotto.worker.callback")

SUCCESS = cb.TopicEventResponse.SUCCESS
RETRY = cb.TopicEventResponse.RETRY
DROP = cb.TopicEventResponse.DROP

_SERVICE = "/spec.proto.runtime.v1.AppCallback/"


def outcome(status: int) -> int:
    """An app's answer as SUCCESS, RETRY or DROP (an unknown value retries)."""
    return status if status in (SUCCESS, RETRY, DROP) else RETRY


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

    def deliver(self, event: cb.TopicEventRequest, timeout: float) -> int:
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
                return DROP
            log.info(
                "delivery of event %s to %s failed (%s): will retry", event.id, self.target, code
            )
            return RETRY
        status = outcome(response.status)
        if status == DROP:
            log.warning("app dropped event %s of topic %s", event.id, event.topic)
        return status

    def close(self) -> None:
        self._channel.close()
