"""The envelope that carries a call's gRPC metadata and deadline to the worker."""

from __future__ import annotations

import pytest

from layotto.boundary import envelope


def test_round_trip_keeps_order_repeats_and_text() -> None:
    pairs = [("x-a", "1"), ("x-a", "2"), ("ünï", "çødé"), ("empty", "")]
    wrapped = envelope.wrap(b"\x00request", 123.25, pairs)
    assert envelope.unwrap(wrapped) == envelope.Envelope(123.25, tuple(pairs), b"\x00request")


def test_binary_values_are_left_out() -> None:
    wrapped = envelope.wrap(b"r", 1.0, [("trace-bin", b"\x00"), ("k", "v")])
    assert envelope.unwrap(wrapped).metadata == (("k", "v"),)


@pytest.mark.parametrize("cut", [1, 5, 12, 15])
def test_truncated_is_refused(cut: int) -> None:
    wrapped = envelope.wrap(b"", 1.0, [("key", "value")])
    with pytest.raises(envelope.EnvelopeError):
        envelope.unwrap(wrapped[:cut])


def test_another_version_is_refused() -> None:
    with pytest.raises(envelope.EnvelopeError, match="version"):
        envelope.unwrap(b"\x02" + envelope.wrap(b"", 1.0, [])[1:])
