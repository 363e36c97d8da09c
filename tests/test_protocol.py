"""Frames of the nng link between the API process and the workers."""

from __future__ import annotations

import struct

import pytest

from layotto.boundary import frames as protocol
from layotto.boundary.addresses import worker_address
from layotto.boundary.frames import (
    METHODS,
    ProtocolError,
    Reply,
    Request,
    decode_batch,
    decode_reply,
    decode_request,
    encode_batch,
    encode_reply,
    encode_request,
    is_batch,
)
from layotto.boundary.status import Code

MAX_ID = 2**64 - 1


@pytest.mark.parametrize("method", METHODS)
def test_request_round_trip_for_every_method(method: str) -> None:
    payload = b"\x0a\x05redis\x12\x01k"
    frame = encode_request(method, 12345, 1234.5625, payload)
    assert decode_request(frame) == Request(method, 12345, 1234.5625, payload)


@pytest.mark.parametrize(
    ("request_id", "deadline", "payload"),
    [
        (0, 0.0, b""),
        (MAX_ID, 1e12, b"\x00" * 70000),
        (7, 987654.123456789, bytes(range(256))),
    ],
)
def test_request_round_trip_extremes(request_id: int, deadline: float, payload: bytes) -> None:
    decoded = decode_request(encode_request("GetNextId", request_id, deadline, payload))
    assert (decoded.request_id, decoded.deadline, decoded.payload) == (
        request_id,
        deadline,
        payload,
    )


def test_methods_have_distinct_wire_ids() -> None:
    frames = {encode_request(m, 1, 1.0, b"")[:2] for m in METHODS}
    assert len(frames) == len(METHODS)
    assert len(set(METHODS)) == len(METHODS)


@pytest.mark.parametrize("code", list(Code))
def test_reply_round_trip_for_every_code(code: Code) -> None:
    payload = b"" if code is Code.OK else "état inconnu".encode()
    decoded = decode_reply(encode_reply(code, 99, payload))
    assert decoded == Reply(code, 99, payload)
    assert type(decoded.code) is Code


def test_reply_round_trip_extremes() -> None:
    big = b"\xff" * 100000
    assert decode_reply(encode_reply(Code.OK, MAX_ID, big)) == Reply(Code.OK, MAX_ID, big)
    assert decode_reply(encode_reply(Code.OK, 0, b"")) == Reply(Code.OK, 0, b"")


def test_truncated_request_frames() -> None:
    frame = encode_request("TryLock", 1, 2.0, b"")
    for size in range(len(frame)):
        with pytest.raises(ProtocolError, match="too short"):
            decode_request(frame[:size])
    # the header alone is a complete request with an empty payload
    assert decode_request(frame).payload == b""


def test_truncated_reply_frames() -> None:
    frame = encode_reply(Code.OK, 1, b"")
    for size in range(len(frame)):
        with pytest.raises(ProtocolError, match="too short"):
            decode_reply(frame[:size])
    assert decode_reply(frame).payload == b""


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_request(version: int) -> None:
    frame = bytearray(encode_request("GetState", 1, 2.0, b"x"))
    frame[0] = version
    with pytest.raises(ProtocolError, match="version"):
        decode_request(bytes(frame))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_reply(version: int) -> None:
    frame = bytearray(encode_reply(Code.OK, 1, b"x"))
    frame[0] = version
    with pytest.raises(ProtocolError, match="version"):
        decode_reply(bytes(frame))


@pytest.mark.parametrize("method_id", [len(METHODS), 200, 255])
def test_unknown_method_id(method_id: int) -> None:
    frame = bytearray(encode_request("GetState", 1, 2.0, b""))
    frame[1] = method_id
    with pytest.raises(ProtocolError):
        decode_request(bytes(frame))


@pytest.mark.parametrize("code", [len(Code), 99, 255])
def test_unknown_status_code_is_a_protocol_error(code: int) -> None:
    frame = bytearray(encode_reply(Code.OK, 1, b""))
    frame[1] = code
    with pytest.raises(ProtocolError):
        decode_reply(bytes(frame))


def test_header_layout_is_network_order() -> None:
    frame = encode_request("SayHello", 0x0102030405060708, 1.5, b"P")
    assert frame[:2] == bytes([protocol.VERSION, 0])
    assert frame[2:10] == bytes(range(1, 9))
    assert struct.unpack("!d", frame[10:18]) == (1.5,)
    assert frame[18:] == b"P"
    reply = encode_reply(Code.NOT_FOUND, 0x0102030405060708, b"Q")
    assert reply == bytes([protocol.VERSION, 5, *range(1, 9)]) + b"Q"


def test_unknown_method_cannot_be_encoded() -> None:
    with pytest.raises(KeyError):
        encode_request("NoSuchMethod", 1, 1.0, b"")


def test_worker_address() -> None:
    assert worker_address("/run/layotto-1", "state.redis", 0) == (
        "ipc:///run/layotto-1/w-state.redis-0.ipc"
    )
    assert worker_address("/tmp/x/", "lock", 3) == "ipc:///tmp/x/w-lock-3.ipc"
    addresses = {worker_address("/r", c, s) for c in ("a", "b") for s in (0, 1)}
    assert len(addresses) == 4


def test_batch_round_trip_keeps_frames_and_order() -> None:
    frames = [b"", b"a", b"\xba" * 3, bytes(range(256))]
    batch = encode_batch(frames)
    assert is_batch(batch)
    assert decode_batch(batch) == frames
    assert not is_batch(encode_request("GetState", 1, 0.0, b"x"))


@pytest.mark.parametrize("cut", [1, 5, 7, -1])
def test_truncated_batch_is_a_protocol_error(cut: int) -> None:
    batch = encode_batch([b"abc", b"defg"])
    with pytest.raises(ProtocolError):
        decode_batch(batch[:cut])
