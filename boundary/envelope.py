"""The request of an rpc that needs its call's gRPC metadata and deadline.

A request frame carries the gRPC request's bytes only. An rpc declared with
``call_metadata=True`` (``boundary/rpcs.py``: InvokeService, whose metadata
become the HTTP request's headers and whose deadline bounds the HTTP call)
gets them too: the API process wraps the request in this envelope and the
worker's handler unwraps it. Frames keep their format, and no other rpc's
payload changes, so kept in-memory workers running older code during a hot
upgrade are unaffected (they never receive an rpc they do not know).

Layout: version (1 byte), deadline (CLOCK_MONOTONIC seconds, a double), the
number of metadata pairs (2 bytes), each pair as key length and value length
(2 and 4 bytes) and their UTF-8 bytes, then the request bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

_VERSION = 1
_HEAD = struct.Struct("!BdH")
_PAIR = struct.Struct("!HI")
_MAX_PAIRS = 0xFFFF


class EnvelopeError(Exception):
    """Bytes that are not an envelope (truncated, or another version)."""


@dataclass(frozen=True)
class Envelope:
    deadline: float
    metadata: tuple[tuple[str, str], ...]
    request: bytes


def wrap(request: bytes, deadline: float, metadata: Iterable[tuple[str, str | bytes]]) -> bytes:
    """The envelope's bytes. Binary metadata values (``-bin`` keys) are left
    out: no HTTP header could carry them as they are."""
    pairs = [(k, v) for k, v in metadata if isinstance(v, str)][:_MAX_PAIRS]
    parts = [_HEAD.pack(_VERSION, deadline, len(pairs))]
    for key, value in pairs:
        k, v = key.encode(), value.encode()
        parts += [_PAIR.pack(len(k), len(v)), k, v]
    parts.append(request)
    return b"".join(parts)


def unwrap(payload: bytes) -> Envelope:
    try:
        version, deadline, count = _HEAD.unpack_from(payload)
        if version != _VERSION:
            raise EnvelopeError(f"unknown envelope version {version}")
        offset, pairs = _HEAD.size, []
        for _ in range(count):
            key_length, value_length = _PAIR.unpack_from(payload, offset)
            offset += _PAIR.size
            end = offset + key_length + value_length
            if end > len(payload):
                raise EnvelopeError("envelope is truncated")
            key = payload[offset : offset + key_length].decode()
            value = payload[offset + key_length : end].decode()
            pairs.append((key, value))
            offset = end
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"malformed envelope: {exc}") from None
    return Envelope(deadline, tuple(pairs), payload[offset:])
