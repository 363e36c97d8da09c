"""A batch of requests in one frame: answered in order, each with its own
status, GetStates of a batch read together (one bulk read)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from layotto.boundary.frames import (
    decode_batch,
    decode_reply,
    encode_batch,
    encode_request,
)
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import Code
from layotto.components.errors import BackendUnavailableError
from layotto.components.state.base import BulkGetItem
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block_table import open_block
from layotto.workers.main import serve_frame
from layotto.workers.state_block import StateBlock

STORE = "state_demo"


@pytest.fixture
def block() -> Iterator[StateBlock]:
    spec = WorkerSpec("state", STORE, "in-memory", {}, "app", 0, "ipc:///tmp/x/w-state-0.ipc")
    opened = open_block(spec)
    assert isinstance(opened, StateBlock)
    yield opened
    opened.close()


def call(method: str, message: object, request_id: int, deadline: float | None = None) -> bytes:
    payload = message.SerializeToString()  # type: ignore[attr-defined]
    return encode_request(method, request_id, deadline or time.monotonic() + 10, payload)


def get(key: str, request_id: int) -> bytes:
    return call("GetState", pb.GetStateRequest(store_name=STORE, key=key), request_id)


def batch(block: StateBlock, frames: Sequence[bytes]) -> list[tuple[Code, int, bytes]]:
    replies = [decode_reply(f) for f in decode_batch(serve_frame(block, encode_batch(frames)))]
    return [(r.code, r.request_id, r.payload) for r in replies]


def save(key: str, value: bytes, request_id: int) -> bytes:
    item = pb.StateItem(key=key, value=value)
    return call("SaveState", pb.SaveStateRequest(store_name=STORE, states=[item]), request_id)


def test_reads_and_writes_of_a_batch_answer_in_order(block: StateBlock) -> None:
    batch(block, [save("a", b"1", 1), save("b", b"2", 2)])
    replies = batch(
        block,
        [get("a", 10), save("c", b"3", 11), get("bad||key", 12), get("missing", 13), get("b", 14)],
    )
    assert [(code, rid) for code, rid, _ in replies] == [
        (Code.OK, 10),
        (Code.OK, 11),
        (Code.INVALID_ARGUMENT, 12),
        (Code.OK, 13),
        (Code.OK, 14),
    ]
    assert pb.GetStateResponse.FromString(replies[0][2]).data == b"1"
    assert pb.GetStateResponse.FromString(replies[3][2]) == pb.GetStateResponse()
    answer = pb.GetStateResponse.FromString(replies[4][2])
    assert (answer.data, answer.etag) == (b"2", "1")


def test_reads_of_a_batch_are_one_bulk_read(
    block: StateBlock, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch(block, [save("a", b"1", 1)])
    asked: list[list[str]] = []
    real = block.component.bulk_get

    def counting(keys: Sequence[str]) -> list[BulkGetItem]:
        asked.append(list(keys))
        return real(keys)  # type: ignore[no-any-return]

    monkeypatch.setattr(block.component, "bulk_get", counting)
    replies = batch(block, [get("a", 1), get("b", 2), get("a", 3)])
    assert [code for code, _, _ in replies] == [Code.OK] * 3
    assert len(asked) == 1 and len(asked[0]) == 3


def test_a_failed_bulk_read_fails_every_read_of_the_batch_only(
    block: StateBlock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(keys: Sequence[str]) -> list[BulkGetItem]:
        raise BackendUnavailableError("redis at x: connection refused")

    monkeypatch.setattr(block.component, "bulk_get", down)
    replies = batch(block, [get("a", 1), save("s", b"v", 2), get("b", 3)])
    assert [code for code, _, _ in replies] == [Code.UNAVAILABLE, Code.OK, Code.UNAVAILABLE]
    assert b"connection refused" in replies[0][2]


def test_late_requests_of_a_batch_are_not_run(block: StateBlock) -> None:
    late = call(
        "SaveState",
        pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key="late", value=b"x")]),
        2,
        deadline=time.monotonic() - 1,
    )
    replies = batch(block, [get("late", 1), late, get("late", 3)])
    assert [code for code, _, _ in replies] == [Code.OK, Code.DEADLINE_EXCEEDED, Code.OK]
    assert pb.GetStateResponse.FromString(replies[2][2]).data == b""  # never written
