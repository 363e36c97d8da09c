"""CloudEvents envelope rules (components/pubsub/cloudevents.py)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from layotto.components.errors import InvalidRequestError
from layotto.components.pubsub.cloudevents import (
    LAST_ERROR_MAX_BYTES,
    dead_letter,
    delivered_size,
    dump,
    envelope,
    event,
    expired,
    to_topic_event,
)
from layotto.proto.runtime_pb2 import SubscribeTopicEventsResponse

NOW = datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)


def build(
    data: bytes = b"hello",
    content_type: str = "text/plain",
    metadata: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    raw = envelope(
        topic="orders",
        pubsub_name="pubsub",
        data=data,
        data_content_type=content_type,
        metadata=metadata or {},
        now=NOW,
        **kwargs,
    )
    event: dict[str, Any] = json.loads(raw)
    return event


# --- envelope ---------------------------------------------------------------


def test_envelope_attributes() -> None:
    event = build(new_id=lambda: "id-1", source="app1", event_type="my.type")
    assert event == {
        "id": "id-1",
        "source": "app1",
        "type": "my.type",
        "specversion": "1.0",
        "datacontenttype": "text/plain",
        "topic": "orders",
        "pubsubname": "pubsub",
        "data": "hello",
    }


def test_envelope_defaults() -> None:
    event = build()
    assert uuid.UUID(event["id"]).version == 4
    assert (event["source"], event["type"]) == ("runtime", "com.runtime.event.sent")
    assert build()["id"] != event["id"]


def test_empty_content_type_is_text_plain() -> None:
    event = build(b"hi", "")
    assert (event["datacontenttype"], event["data"]) == ("text/plain", "hi")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"],
)
def test_json_payload_is_a_json_value(content_type: str) -> None:
    event = build(b'{"a": [1, 2.5, null, "\xc3\xa9"]}', content_type)
    assert event["data"] == {"a": [1, 2.5, None, "é"]}
    assert event["datacontenttype"] == content_type
    assert "data_base64" not in event


def test_json_scalar_payload() -> None:
    assert build(b'"text"', "application/json")["data"] == "text"
    assert build(b"42", "application/json")["data"] == 42


@pytest.mark.parametrize("data", [b"{not json", b"NaN", b""])
def test_json_content_type_with_invalid_json_is_a_string(data: bytes) -> None:
    event = build(data, "application/json")
    assert event["data"] == data.decode()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/html", "application/xml", "application/atom+xml"]
)
def test_text_payload_is_a_string(content_type: str) -> None:
    event = build("<p>é</p>".encode(), content_type)
    assert event["data"] == "<p>é</p>"
    assert "data_base64" not in event


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (bytes(range(256)), "application/octet-stream"),
        (b"plain ascii", "application/octet-stream"),
        (b"image", "image/png"),
        (b"\xff\xfe not utf-8", "text/plain"),
        (b"\xff", "application/json"),
    ],
)
def test_binary_payload_is_base64(data: bytes, content_type: str) -> None:
    event = build(data, content_type)
    assert base64.b64decode(event["data_base64"]) == data
    assert "data" not in event


def test_ttl_adds_expiration() -> None:
    event = build(metadata={"ttlInSeconds": "90"})
    assert event["expiration"] == "2024-05-06T07:09:39Z"  # RFC 3339, UTC, whole seconds


def test_ttl_with_other_time_zone_is_utc() -> None:
    now = datetime(2024, 5, 6, 9, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    raw = envelope(
        topic="t",
        pubsub_name="p",
        data=b"",
        data_content_type="",
        metadata={"ttlInSeconds": "1"},
        now=now,
    )
    assert json.loads(raw)["expiration"] == "2024-05-06T07:00:01Z"


def test_no_ttl_no_expiration() -> None:
    assert "expiration" not in build(metadata={"other": "x"})
    assert "expiration" not in build(metadata={"ttlInSeconds": ""})


@pytest.mark.parametrize("ttl", ["0", "-5", "1.5", "ten", " 5", "99999999999999999999"])
def test_bad_ttl_is_invalid(ttl: str) -> None:
    with pytest.raises(InvalidRequestError, match="ttlInSeconds"):
        build(metadata={"ttlInSeconds": ttl})


def test_cloudevent_payload_is_the_envelope() -> None:
    given = {
        "id": "given-id",
        "source": "elsewhere",
        "type": "their.type",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "data": {"x": 1},
        "subject": "s",
        "custom": 7,
        "topic": "stale",
    }
    event = build(json.dumps(given).encode(), "application/cloudevents+json")
    # Kept as given, except where it was actually published (as Dapr's FromCloudEvent).
    assert event == {**given, "topic": "orders", "pubsubname": "pubsub"}


def test_cloudevent_payload_gets_missing_attributes() -> None:
    event = build(
        b'{"data": "x", "id": "", "type": null}',
        "application/cloudevents+json; charset=utf-8",
        new_id=lambda: "new",
    )
    assert event == {
        "data": "x",
        "id": "new",
        "source": "runtime",
        "type": "com.runtime.event.sent",
        "specversion": "1.0",
        "topic": "orders",
        "pubsubname": "pubsub",
    }


def test_cloudevent_payload_gets_ttl() -> None:
    given = b'{"id": "1", "expiration": "2000-01-01T00:00:00Z"}'
    event = build(given, "application/cloudevents+json", {"ttlInSeconds": "1"})
    assert event["expiration"] == "2024-05-06T07:08:10Z"
    assert build(given, "application/cloudevents+json")["expiration"] == "2000-01-01T00:00:00Z"


@pytest.mark.parametrize("data", [b"{broken", b"[1, 2]", b'"a string"', b"\xff"])
def test_invalid_cloudevent_payload_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidRequestError, match="CloudEvents"):
        build(data, "application/cloudevents+json")


# --- to_topic_event ---------------------------------------------------------


def deliver(
    data: bytes, content_type: str, metadata: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], Any]:
    raw = envelope(
        topic="orders",
        pubsub_name="pubsub",
        data=data,
        data_content_type=content_type,
        metadata=metadata or {},
        source="app1",
    )
    return json.loads(raw), to_topic_event(raw, pubsub_name="sub-pubsub", topic="sub-topic")


def test_topic_event_fields() -> None:
    event, request = deliver(b"hello", "text/plain")
    assert request.id == event["id"]
    assert (request.source, request.type, request.spec_version) == (
        "app1",
        "com.runtime.event.sent",
        "1.0",
    )
    assert request.data_content_type == "text/plain"
    assert (request.topic, request.pubsub_name) == ("sub-topic", "sub-pubsub")
    assert request.data == b"hello"
    assert dict(request.metadata) == {}


@pytest.mark.parametrize(
    ("data", "content_type", "expected"),
    [
        (bytes(range(256)), "application/octet-stream", bytes(range(256))),
        ("héllo".encode(), "text/plain", "héllo".encode()),
        (b'{ "b": [1, 2],  "a": "\xc3\xa9" }', "application/json", '{"b":[1,2],"a":"é"}'.encode()),
        (b"not json", "application/json", b"not json"),
        (b"", "text/plain", b""),
    ],
)
def test_topic_event_data(data: bytes, content_type: str, expected: bytes) -> None:
    _, request = deliver(data, content_type)
    assert request.data == expected
    assert request.data_content_type == content_type


def test_topic_event_extensions_are_metadata() -> None:
    given = {
        "id": "1",
        "data": "x",
        "expiration": "2099-01-01T00:00:00Z",
        "traceid": "abc",
        "count": 3,
        "flag": True,
        "nothing": None,
        "nested": {"a": 1},
    }
    raw = json.dumps(given).encode()
    request = to_topic_event(raw, pubsub_name="p", topic="t")
    assert dict(request.metadata) == {
        "expiration": "2099-01-01T00:00:00Z",
        "traceid": "abc",
        "count": "3",
        "flag": "true",
    }


def test_topic_event_without_content_type() -> None:
    request = to_topic_event(b'{"id": "1", "data": {"a": 1}}', pubsub_name="p", topic="t")
    assert (request.data, request.data_content_type) == (b'{"a":1}', "application/json")
    request = to_topic_event(b'{"id": "1", "data_base64": "AAE="}', pubsub_name="p", topic="t")
    assert (request.data, request.data_content_type) == (b"\x00\x01", "application/octet-stream")
    request = to_topic_event(b'{"id": "1"}', pubsub_name="p", topic="t")
    assert (request.data, request.spec_version) == (b"", "1.0")


@pytest.mark.parametrize("raw", [b"raw bytes \xff", b"[1, 2]", b"12", b'"s"', b""])
def test_non_envelope_is_delivered_raw(raw: bytes) -> None:
    request = to_topic_event(raw, pubsub_name="p", topic="t")
    assert request.data == raw
    assert request.data_content_type == "application/octet-stream"
    assert uuid.UUID(request.id)
    assert (request.topic, request.pubsub_name) == ("t", "p")
    assert to_topic_event(raw, pubsub_name="p", topic="t").id != request.id


# --- expired ----------------------------------------------------------------


def with_expiration(value: object) -> bytes:
    return json.dumps({"id": "1", "data": "x", "expiration": value}).encode()


def test_expired() -> None:
    raw = with_expiration("2024-05-06T07:08:09Z")
    assert expired(raw, now=datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC))
    assert not expired(raw, now=datetime(2024, 5, 6, 7, 8, 8, tzinfo=UTC))
    assert expired(with_expiration("2000-01-01T00:00:00Z"))  # against the real clock
    assert not expired(with_expiration("2999-01-01T00:00:00Z"))


def test_expired_understands_offsets_and_fractions() -> None:
    raw = with_expiration("2024-05-06T09:08:09.250+02:00")
    assert expired(raw, now=datetime(2024, 5, 6, 7, 8, 9, 300000, tzinfo=UTC))
    assert not expired(raw, now=datetime(2024, 5, 6, 7, 8, 9, 200000, tzinfo=UTC))


def test_ttl_round_trip() -> None:
    raw = envelope(
        topic="t",
        pubsub_name="p",
        data=b"x",
        data_content_type="",
        metadata={"ttlInSeconds": "10"},
        now=NOW,
    )
    assert not expired(raw, now=NOW + timedelta(seconds=9))
    assert expired(raw, now=NOW + timedelta(seconds=11))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "1", "data": "x"}',
        with_expiration("not a time"),
        with_expiration(12345),
        b"not json",
        b"[1]",
    ],
)
def test_not_expired_without_usable_expiration(raw: bytes) -> None:
    assert not expired(raw, now=datetime(2999, 1, 1, tzinfo=UTC))


# --- sizes as delivered, dead letters ---------------------------------------

SIZED = [
    (b"plain text", "text/plain", {}),
    ('{"a": [1, 2.5e3, "é"], "b": null}'.encode(), "application/json", {}),
    (bytes(range(256)) * 40, "application/octet-stream", {}),
    ("unicode ✓ ".encode() * 1000, "text/plain; charset=utf-8", {"ttlInSeconds": "60"}),
    (
        json.dumps({"id": "own", "data": {"k": 1}, "ext": "x" * 300, "n": 7}).encode(),
        "application/cloudevents+json",
        {},
    ),
]


@pytest.mark.parametrize(("data", "content_type", "metadata"), SIZED)
def test_delivered_size_is_the_size_of_what_a_stream_receives(
    data: bytes, content_type: str, metadata: dict[str, str]
) -> None:
    attributes = event(
        topic="orders",
        pubsub_name="pubsub",
        data=data,
        data_content_type=content_type,
        metadata=metadata,
    )
    delivered = to_topic_event(dump(attributes), pubsub_name="pubsub", topic="orders")
    response = SubscribeTopicEventsResponse(event_message=delivered)
    size = delivered_size(attributes, pubsub_name="pubsub", topic="orders")
    assert size == response.ByteSize() > delivered.ByteSize()


@pytest.mark.parametrize(("data", "content_type", "metadata"), SIZED)
def test_dead_letter_size_bounds_every_dead_letter_delivery(
    data: bytes, content_type: str, metadata: dict[str, str]
) -> None:
    attributes = event(
        topic="orders",
        pubsub_name="pubsub",
        data=data,
        data_content_type=content_type,
        metadata=metadata,
    )
    bound = delivered_size(
        attributes, pubsub_name="pubsub", topic="orders", dead_letter_topic="orders-deadletter"
    )
    on_topic = delivered_size(attributes, pubsub_name="pubsub", topic="orders")
    assert bound > on_topic
    for attempts, error in [(10, "short"), (2**31 - 1, "é" * 1000), (2**31 - 1, "x" * 300)]:
        raw = dead_letter(
            dump(attributes), pubsub_name="pubsub", topic="orders", attempts=attempts, error=error
        )
        delivered = to_topic_event(raw, pubsub_name="pubsub", topic="orders-deadletter")
        assert SubscribeTopicEventsResponse(event_message=delivered).ByteSize() <= bound
    assert SubscribeTopicEventsResponse(event_message=delivered).ByteSize() == bound  # exact
    # The longest error is cut at a character boundary, within the bytes allowed.
    assert len(delivered.metadata["lasterror"].encode()) == LAST_ERROR_MAX_BYTES


def test_dead_letter_keeps_the_event_and_says_where_and_why_it_failed() -> None:
    original = envelope(
        topic="orders",
        pubsub_name="pubsub",
        data=b"order 1",
        data_content_type="text/plain",
        metadata={},
        new_id=lambda: "e-1",
    )
    raw = dead_letter(original, pubsub_name="pubsub", topic="orders", attempts=10, error="boom")
    delivered = to_topic_event(raw, pubsub_name="pubsub", topic="orders-deadletter")
    assert (delivered.id, delivered.data, delivered.topic) == (
        "e-1",
        b"order 1",
        "orders-deadletter",
    )
    assert dict(delivered.metadata) == {
        "originaltopic": "orders",
        "deliveryattempts": "10",
        "lasterror": "boom",
    }


def test_dead_letter_of_bytes_that_are_no_envelope_carries_them_as_data() -> None:
    raw = dead_letter(b"\xff not json", pubsub_name="p", topic="t", attempts=3, error="e")
    delivered = to_topic_event(raw, pubsub_name="p", topic="t-deadletter")
    assert delivered.data == b"\xff not json"
    assert delivered.data_content_type == "application/octet-stream"
    assert delivered.metadata["deliveryattempts"] == "3"
