"""Pub/sub metadata, parsed without grpc or redis-py.

``maxLenApprox`` is the backends'; the delivery settings (Dapr's names) are
read by the worker's delivery loops. Config validation runs these same
readers in the supervisor, which imports neither library.
"""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components.metadata import Read, free_text, parse_int, parse_seconds

MAX_LEN_KEY = "maxLenApprox"


def max_len_approx(metadata: Mapping[str, str], component: str) -> int | None:
    """Messages to keep per topic, ≥ 1; None when absent (each backend has its default)."""
    if MAX_LEN_KEY not in metadata:
        return None
    return parse_int(metadata, MAX_LEN_KEY, 0, component, minimum=1)


def processing_timeout(metadata: Mapping[str, str], component: str) -> float:
    """Seconds a message may stay unacknowledged before another consumer claims it."""
    return parse_seconds(metadata, "processingTimeout", 60.0, component)


def redeliver_interval(metadata: Mapping[str, str], component: str) -> float:
    """Seconds between scans for such messages."""
    return parse_seconds(metadata, "redeliverInterval", 15.0, component)


MAX_DELIVERY_ATTEMPTS_KEY = "maxDeliveryAttempts"
DEFAULT_MAX_DELIVERY_ATTEMPTS = 10
DEAD_LETTER_TOPIC_KEY = "deadLetterTopic"
DEAD_LETTER_SUFFIX = "-deadletter"


def max_delivery_attempts(metadata: Mapping[str, str], component: str) -> int:
    """Deliveries of one event, ≥ 1, before it goes to the dead-letter topic.

    With the back-off between attempts (0.1 s doubling to 5 s) the default 10
    gives up after about 20 s of RETRY answers (longer for an app that times out).
    """
    return parse_int(
        metadata, MAX_DELIVERY_ATTEMPTS_KEY, DEFAULT_MAX_DELIVERY_ATTEMPTS, component, minimum=1
    )


def dead_letter_topic(metadata: Mapping[str, str], component: str) -> str | None:
    """The topic of events that failed every attempt, ``"{topic}"`` standing
    for the event's topic: absent, ``"{topic}-deadletter"``; empty, None (such
    events are dropped with an error in the log)."""
    raw = metadata.get(DEAD_LETTER_TOPIC_KEY)
    if raw is None:
        return "{topic}" + DEAD_LETTER_SUFFIX
    text = raw.strip()
    return text or None


def dead_letter_of(template: str | None, topic: str) -> str | None:
    """The dead-letter topic of ``topic`` under ``template`` (see ``dead_letter_topic``)."""
    return None if template is None else template.replace("{topic}", topic)


# consumerID is any group name; an empty one means the default (the app id).
DELIVERY_READERS: Mapping[str, Read] = {
    "consumerID": free_text,
    "processingTimeout": processing_timeout,
    "redeliverInterval": redeliver_interval,
    MAX_DELIVERY_ATTEMPTS_KEY: max_delivery_attempts,
    DEAD_LETTER_TOPIC_KEY: dead_letter_topic,
}
