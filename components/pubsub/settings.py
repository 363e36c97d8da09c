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


# consumerID is any group name; an empty one means the default (the app id).
DELIVERY_READERS: Mapping[str, Read] = {
    "consumerID": free_text,
    "processingTimeout": processing_timeout,
    "redeliverInterval": redeliver_interval,
}
