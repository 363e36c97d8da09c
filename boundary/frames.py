"""Frames on the nng link between the API process and component workers.

A request is a fixed header (method, request id, deadline) followed by the
gRPC request's protobuf bytes, untouched; a reply is (status, request id)
followed by the response's protobuf bytes or, on error, a UTF-8 message. The
API process never re-encodes messages: it only routes them.

Deadlines are CLOCK_MONOTONIC seconds, which all processes of one machine
share, so a worker can skip work its caller has already given up on.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from layotto.boundary.rpcs import WIRE
from layotto.boundary.status import Code

VERSION = 1
# A method's id is its wire_id in boundary/rpcs.py.
METHODS = tuple(rpc.name for rpc in WIRE)
METHOD_IDS = {rpc.name: rpc.wire_id for rpc in WIRE}
_BY_ID = {rpc.wire_id: rpc.name for rpc in WIRE}

_REQUEST = struct.Struct("!BBQd")
_REPLY = struct.Struct("!BBQ")


class ProtocolError(Exception):
    """A frame that is not ours (wrong version or truncated)."""


@dataclass(frozen=True)
class Request:
    method: str
    request_id: int
    deadline: float
    payload: bytes


@dataclass(frozen=True)
class Reply:
    code: Code
    request_id: int
    payload: bytes


def encode_request(method: str, request_id: int, deadline: float, payload: bytes) -> bytes:
    return _REQUEST.pack(VERSION, METHOD_IDS[method], request_id, deadline) + payload


def decode_request(frame: bytes) -> Request:
    if len(frame) < _REQUEST.size:
        raise ProtocolError(f"request frame of {len(frame)} bytes is too short")
    version, method_id, request_id, deadline = _REQUEST.unpack_from(frame)
    method = _BY_ID.get(method_id)
    if version != VERSION or method is None:
        raise ProtocolError(f"unknown request frame (version {version}, method {method_id})")
    return Request(method, request_id, deadline, frame[_REQUEST.size :])


def encode_reply(code: Code, request_id: int, payload: bytes) -> bytes:
    return _REPLY.pack(VERSION, code, request_id) + payload


def decode_reply(frame: bytes) -> Reply:
    if len(frame) < _REPLY.size:
        raise ProtocolError(f"reply frame of {len(frame)} bytes is too short")
    version, code, request_id = _REPLY.unpack_from(frame)
    if version != VERSION:
        raise ProtocolError(f"unknown reply frame version {version}")
    if code not in Code._value2member_map_:
        raise ProtocolError(f"unknown reply frame status code {code}")
    return Reply(Code(code), request_id, frame[_REPLY.size :])


# A batch frame carries several request (or reply) frames in one nng message,
# so that under concurrency one nng round trip, with its thread wake-ups,
# serves many calls. Its first byte is never a VERSION.
BATCH = 0xBA
_BATCH_HEAD = struct.Struct("!BI")
_LENGTH = struct.Struct("!I")


def encode_batch(frames: Sequence[bytes]) -> bytes:
    parts = [_BATCH_HEAD.pack(BATCH, len(frames))]
    for frame in frames:
        parts.append(_LENGTH.pack(len(frame)))
        parts.append(frame)
    return b"".join(parts)


def is_batch(frame: bytes) -> bool:
    return frame[:1] == b"\xba"


def decode_batch(frame: bytes) -> list[bytes]:
    if len(frame) < _BATCH_HEAD.size:
        raise ProtocolError("batch frame is too short")
    _, count = _BATCH_HEAD.unpack_from(frame)
    frames, offset = [], _BATCH_HEAD.size
    for _ in range(count):
        if offset + _LENGTH.size > len(frame):
            raise ProtocolError("batch frame is truncated")
        (length,) = _LENGTH.unpack_from(frame, offset)
        offset += _LENGTH.size
        if offset + length > len(frame):
            raise ProtocolError("batch frame is truncated")
        frames.append(frame[offset : offset + length])
        offset += length
    if offset != len(frame):
        raise ProtocolError("batch frame has trailing bytes")
    return frames
