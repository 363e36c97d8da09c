"""A call whose worker died holding it: sent again only when its rpc is
repeatable, and answered definitely (api/nng_client.py, boundary/repeats.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from layotto.api.nng_client import MAX_REPEATS, WorkerPool, send_again
from layotto.boundary.frames import decode_request, encode_reply
from layotto.boundary.nng_requester import PeerGoneError
from layotto.boundary.repeats import Repeatable
from layotto.boundary.rpcs import UNARY
from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb

UNLOCK = UNARY["Unlock"].repeatable
UNEXIST = pb.UnlockResponse(status=pb.UnlockResponse.LOCK_UNEXIST).SerializeToString()
SUCCESS = pb.UnlockResponse(status=pb.UnlockResponse.SUCCESS).SerializeToString()
OTHERS = pb.UnlockResponse(status=pb.UnlockResponse.LOCK_BELONG_TO_OTHERS).SerializeToString()


class ScriptedSlot:
    """Stands in for a replica: each exchange takes the next step of the
    script, either an exception to raise or a payload to answer with."""

    def __init__(self, script: list[Exception | bytes]) -> None:
        self.script = script
        self.sent = 0

    def exchange(self, frame: bytes, deadline: float) -> bytes:
        self.sent += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return encode_reply(Code.OK, decode_request(frame).request_id, step)


def call(
    script: list[Exception | bytes], repeatable: Repeatable | None, method: str = "Unlock"
) -> tuple[Callable[[], bytes], ScriptedSlot]:
    pool = WorkerPool("lock_demo", [])  # no replica: no socket is made
    slot = ScriptedSlot(script)
    pool._pick = lambda *_args: slot  # type: ignore[assignment,method-assign,return-value]
    deadline = time.monotonic() + 60
    return lambda: pool.call(method, b"", deadline, repeatable=repeatable), slot


def test_a_call_that_is_not_repeatable_is_never_sent_again() -> None:
    run, slot = call([PeerGoneError(), SUCCESS], repeatable=None, method="TryLock")
    with pytest.raises(CallError) as failed:
        run()
    assert failed.value.code is Code.UNAVAILABLE
    assert "may or may not have been applied" in failed.value.message
    assert slot.sent == 1


def test_a_repeatable_call_is_sent_again_and_answered() -> None:
    reads = Repeatable("reads only")
    run, slot = call([PeerGoneError(), b"value"], repeatable=reads, method="GetState")
    assert run() == b"value"
    assert slot.sent == 2


def test_a_repeatable_call_gives_up_after_max_repeats() -> None:
    run, slot = call([PeerGoneError()] * (MAX_REPEATS + 1) + [SUCCESS], repeatable=UNLOCK)
    with pytest.raises(CallError, match="may or may not"):
        run()
    assert slot.sent == MAX_REPEATS + 1


def test_the_decision() -> None:
    assert not send_again(None, 1)
    assert [send_again(UNLOCK, lost) for lost in range(1, MAX_REPEATS + 2)] == [True] * (
        MAX_REPEATS
    ) + [False]


def test_an_unlock_repeated_after_a_lost_attempt_that_finds_no_lock_succeeded() -> None:
    run, _ = call([PeerGoneError(), UNEXIST], repeatable=UNLOCK)
    assert run() == SUCCESS


def test_a_first_unlock_that_finds_no_lock_says_so() -> None:
    run, _ = call([UNEXIST], repeatable=UNLOCK)
    assert run() == UNEXIST


@pytest.mark.parametrize("answer", [SUCCESS, OTHERS])
def test_an_unlock_repeated_after_a_lost_attempt_passes_other_answers_on(answer: bytes) -> None:
    run, _ = call([PeerGoneError(), answer], repeatable=UNLOCK)
    assert run() == answer


def test_an_error_answered_to_a_repeat_is_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, frame: bytes, deadline: float) -> bytes:
        self.sent += 1
        if self.sent == 1:
            raise PeerGoneError
        return encode_reply(Code.UNAVAILABLE, decode_request(frame).request_id, b"redis down")

    monkeypatch.setattr(ScriptedSlot, "exchange", refuse)
    run, _ = call([], repeatable=UNLOCK)
    with pytest.raises(CallError) as failed:
        run()
    assert (failed.value.code, failed.value.message) == (Code.UNAVAILABLE, "redis down")


def test_the_design_document_lists_every_rpc_as_declared() -> None:
    design = (Path(__file__).resolve().parent.parent / "docs" / "design.md").read_text()
    listed: dict[str, bool] = {}
    for row in re.findall(r"^\| (`.+?) \| (yes|no) \|", design, re.MULTILINE):
        for name in re.findall(r"`(\w+)`", row[0]):
            listed[name] = row[1] == "yes"
    assert listed == {name: rpc.repeatable is not None for name, rpc in UNARY.items()}
