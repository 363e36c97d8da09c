"""CloudEvents 1.0 envelopes, built and opened the way Layotto (Dapr's contrib) does.

Publish wraps the payload in a JSON envelope (``event``, written by ``dump``;
``envelope`` does both); the backend stores those bytes; delivery turns them
into a ``TopicEventRequest`` (``to_topic_event``) unless ``expired``.
``delivered_size`` is what that delivery will weigh (on the event's
dead-letter topic too), so publish can refuse an event no subscriber could
receive; ``dead_letter`` is the envelope an event
that failed every delivery is published with on its dead-letter topic.
Pure functions, no I/O.

Where the payload goes: ``data`` as a JSON value for a JSON content type whose
bytes parse; ``data`` as a string for a textual content type whose bytes are
UTF-8 (Dapr would also put non-UTF-8 bytes there, mangling them); otherwise
``data_base64``. A payload that is itself a CloudEvent
(``application/cloudevents+json``) becomes the envelope, with missing required
attributes filled in and ``topic``/``pubsubname`` set to where it was published
(as Dapr's ``FromCloudEvent`` does).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from layotto.components.errors import InvalidRequestError
from layotto.proto.appcallback_pb2 import TopicEventRequest

SPEC_VERSION = "1.0"
DEFAULT_SOURCE = "runtime"
DEFAULT_TYPE = "com.runtime.event.sent"
DEFAULT_CONTENT_TYPE = "text/plain"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
TTL_KEY = "ttlInSeconds"

# Attributes that have their own TopicEventRequest field (or are the payload);
# every other attribute of an envelope is an extension, passed on as metadata.
_CORE = frozenset(
    {"id", "source", "type", "specversion", "datacontenttype", "topic", "pubsubname"}
    | {"data", "data_base64"}
)
_TEXT_TYPES = frozenset(
    {
        "application/xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
        "application/yaml",
        "application/x-yaml",
    }
)
_TTL = re.compile(r"[+-]?[0-9]+")

# Extension attributes of an event on its dead-letter topic (CloudEvents
# extension names: lower-case letters and digits).
ORIGINAL_TOPIC = "originaltopic"
DELIVERY_ATTEMPTS = "deliveryattempts"
LAST_ERROR = "lasterror"
LAST_ERROR_MAX_BYTES = 256  # longer errors are cut, so the attributes' size is bounded
_MOST_ATTEMPTS = str(2**31 - 1)  # the longest attempt count publish makes room for


def _media_type(content_type: str) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def is_text(content_type: str) -> bool:
    media = _media_type(content_type)
    return (
        media.startswith("text/")
        or media in _TEXT_TYPES
        or media.endswith("+xml")
        or is_json(media)
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python would accept NaN and Infinity


def _parse_json(data: bytes) -> Any:
    """The JSON value of UTF-8 ``data``; ValueError when it is not one."""
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _expiration(metadata: Mapping[str, str], now: datetime | None) -> str | None:
    """RFC 3339 UTC time ``ttlInSeconds`` from now (whole seconds, as Go's
    time.RFC3339 prints it); None when no TTL is asked for."""
    raw = metadata.get(TTL_KEY)
    if not raw:  # absent or empty means no TTL, as in Dapr
        return None
    if not _TTL.fullmatch(raw) or int(raw) <= 0:
        raise InvalidRequestError(
            f"metadata {TTL_KEY} must be a positive integer (seconds), got {raw!r}"
        )
    try:
        moment = _now(now).astimezone(UTC) + timedelta(seconds=int(raw))
    except OverflowError:
        raise InvalidRequestError(f"metadata {TTL_KEY} is too large: {raw!r}") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _payload(data: bytes, content_type: str) -> tuple[str, Any]:
    """(attribute, value) holding ``data`` in the envelope."""
    if is_json(content_type):
        try:
            return "data", _parse_json(data)
        except ValueError:
            pass  # not JSON after all: carried as text, as Dapr does
    if is_text(content_type):
        try:
            return "data", data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return "data_base64", base64.b64encode(data).decode("ascii")


def _missing(value: Any) -> bool:
    return value is None or value == ""


def envelope(
    *,
    topic: str,
    pubsub_name: str,
    data: bytes,
    data_content_type: str,
    metadata: Mapping[str, str],
    source: str = DEFAULT_SOURCE,
    event_type: str = DEFAULT_TYPE,
    now: datetime | None = None,
    new_id: Callable[[], str] | None = None,
) -> bytes:
    """The CloudEvents JSON stored for one publish: ``dump(event(...))``."""
    return dump(
        event(
            topic=topic,
            pubsub_name=pubsub_name,
            data=data,
            data_content_type=data_content_type,
            metadata=metadata,
            source=source,
            event_type=event_type,
            now=now,
            new_id=new_id,
        )
    )


def dump(event: Mapping[str, Any]) -> bytes:
    """An event's envelope bytes, as stored."""
    return _dump(event)


def event(
    *,
    topic: str,
    pubsub_name: str,
    data: bytes,
    data_content_type: str,
    metadata: Mapping[str, str],
    source: str = DEFAULT_SOURCE,
    event_type: str = DEFAULT_TYPE,
    now: datetime | None = None,
    new_id: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """The CloudEvents attributes of one publish (the envelope, not yet JSON).

    Raises InvalidRequestError for a bad ``ttlInSeconds`` or a CloudEvents
    payload that is not a JSON object.
    """
    make_id = new_id or (lambda: str(uuid.uuid4()))
    expiration = _expiration(metadata, now)
    attributes: dict[str, Any]
    if _media_type(data_content_type) == CLOUDEVENTS_CONTENT_TYPE:
        try:
            attributes = _parse_json(data)
        except ValueError as exc:
            raise InvalidRequestError(f"data is not a CloudEvents JSON envelope: {exc}") from None
        if not isinstance(attributes, dict):
            raise InvalidRequestError("data is not a CloudEvents JSON envelope: not an object")
        for name, default in (
            ("id", make_id),
            ("source", lambda: source),
            ("type", lambda: event_type),
            ("specversion", lambda: SPEC_VERSION),
        ):
            if _missing(attributes.get(name)):
                attributes[name] = default()
        attributes["topic"] = topic
        attributes["pubsubname"] = pubsub_name
    else:
        content_type = data_content_type or DEFAULT_CONTENT_TYPE
        attributes = {
            "id": make_id(),
            "source": source,
            "type": event_type,
            "specversion": SPEC_VERSION,
            "datacontenttype": content_type,
            "topic": topic,
            "pubsubname": pubsub_name,
        }
        field, value = _payload(bytes(data), content_type)
        attributes[field] = value
    if expiration is not None:
        attributes["expiration"] = expiration
    return attributes


def _open(envelope_bytes: bytes) -> dict[str, Any] | None:
    try:
        event = _parse_json(envelope_bytes)
    except ValueError:  # UnicodeDecodeError is one too
        return None
    return event if isinstance(event, dict) else None


def _string(value: Any) -> str:
    """An attribute as text: strings as they are, other JSON values as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else _dump(value).decode("utf-8")


def _data(event: Mapping[str, Any]) -> tuple[bytes, str]:
    """The payload bytes and the content type to report for them."""
    content_type = _string(event.get("datacontenttype"))
    encoded = event.get("data_base64")
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True), (
                content_type or "application/octet-stream"
            )
        except (binascii.Error, ValueError):
            return encoded.encode("utf-8"), content_type or DEFAULT_CONTENT_TYPE
    data = event.get("data")
    if data is None:
        return b"", content_type
    if isinstance(data, str):
        return data.encode("utf-8"), content_type or DEFAULT_CONTENT_TYPE
    # CloudEvents: without datacontenttype, JSON data is application/json.
    return _dump(data), content_type or "application/json"


def to_topic_event(envelope_bytes: bytes, *, pubsub_name: str, topic: str) -> TopicEventRequest:
    """What the app receives for a stored message.

    ``topic`` and ``pubsub_name`` are the subscription's. Bytes that are not a
    JSON object (say, an entry somebody added to the stream by hand) are
    delivered as they are, as application/octet-stream under a fresh id.
    """
    event = _open(envelope_bytes)
    if event is None:
        return TopicEventRequest(
            id=str(uuid.uuid4()),
            source=DEFAULT_SOURCE,
            type=DEFAULT_TYPE,
            spec_version=SPEC_VERSION,
            data_content_type="application/octet-stream",
            topic=topic,
            pubsub_name=pubsub_name,
            data=bytes(envelope_bytes),
        )
    return _topic_event(event, pubsub_name=pubsub_name, topic=topic)


def _topic_event(
    event: Mapping[str, Any],
    *,
    pubsub_name: str,
    topic: str,
    payload: tuple[bytes, str] | None = None,
) -> TopicEventRequest:
    """``payload``: the event's ``_data``, when the caller has it already."""
    data, content_type = payload or _data(event)
    extensions = {
        name: _string(value)
        for name, value in event.items()
        if name not in _CORE and isinstance(value, str | int | float | bool)
    }
    return TopicEventRequest(
        id=_string(event.get("id")) or str(uuid.uuid4()),
        source=_string(event.get("source")),
        type=_string(event.get("type")),
        spec_version=_string(event.get("specversion")) or SPEC_VERSION,
        data_content_type=content_type,
        topic=topic,
        pubsub_name=pubsub_name,
        data=data,
        metadata=extensions,
    )


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip().upper())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def expired(envelope_bytes: bytes, now: datetime | None = None) -> bool:
    """True when the envelope's ``expiration`` has passed. No envelope, no
    expiration, or one that does not parse: not expired (Dapr delivers those)."""
    event = _open(envelope_bytes)
    expiration = event.get("expiration") if event else None
    if not isinstance(expiration, str):
        return False
    moment = _parse_time(expiration)
    return moment is not None and moment < _now(now)


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def delivered_size(
    event: Mapping[str, Any], *, pubsub_name: str, topic: str, dead_letter_topic: str | None = None
) -> int:
    """Bytes of the largest gRPC message that will deliver ``event``: a
    ``SubscribeTopicEventsResponse`` holding its ``TopicEventRequest`` (what a
    streaming subscriber receives; an AppCallback server receives the bare
    request, a little less) on ``topic`` and, when given, on
    ``dead_letter_topic`` with the longest dead-letter attributes it can get.
    The payload is decoded once and never copied."""
    data, content_type = _data(event)
    # What the payload adds to a message: field 7, its length and the bytes (none when empty).
    payload = 1 + _varint_size(len(data)) + len(data) if data else 0
    empty = (b"", content_type)
    on_topic = _topic_event(event, pubsub_name=pubsub_name, topic=topic, payload=empty)
    sizes = [on_topic.ByteSize()]
    if dead_letter_topic is not None:
        worst = _dead_letter_event(
            event, topic=topic, attempts=_MOST_ATTEMPTS, error="x" * LAST_ERROR_MAX_BYTES
        )
        on_dead_letter = _topic_event(
            worst, pubsub_name=pubsub_name, topic=dead_letter_topic, payload=empty
        )
        sizes.append(on_dead_letter.ByteSize())
    request = max(sizes) + payload
    return 1 + _varint_size(request) + request


def _cut(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` of UTF-8, cut at a character boundary."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _dead_letter_event(
    event: Mapping[str, Any], *, topic: str, attempts: str, error: str
) -> dict[str, Any]:
    return {
        **event,
        ORIGINAL_TOPIC: topic,
        DELIVERY_ATTEMPTS: attempts,
        LAST_ERROR: _cut(error, LAST_ERROR_MAX_BYTES),
    }


def dead_letter(
    envelope_bytes: bytes, *, pubsub_name: str, topic: str, attempts: int, error: str
) -> bytes:
    """The envelope an event that failed ``attempts`` deliveries on ``topic``
    is published with on its dead-letter topic: its own attributes, plus
    ``originaltopic``, ``deliveryattempts`` and ``lasterror`` (cut to
    ``LAST_ERROR_MAX_BYTES``). Bytes that are not an envelope (an entry added
    to a stream by hand) travel as its base64 data."""
    event = _open(envelope_bytes)
    if event is None:
        event = {
            "id": str(uuid.uuid4()),
            "source": DEFAULT_SOURCE,
            "type": DEFAULT_TYPE,
            "specversion": SPEC_VERSION,
            "datacontenttype": "application/octet-stream",
            "topic": topic,
            "pubsubname": pubsub_name,
            "data_base64": base64.b64encode(envelope_bytes).decode("ascii"),
        }
    return _dump(_dead_letter_event(event, topic=topic, attempts=str(attempts), error=error))
