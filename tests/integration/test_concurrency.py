"""Many concurrent callers through the real sidecar: every caller gets its own answer.

Under load the API batches calls to a worker into one nng message; these
tests would catch a reply handed to the wrong caller or a lost one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

Stub = runtime_pb2_grpc.RuntimeStub
THREADS = 24
ROUNDS = 40


def run_threads(work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # reported below, with the thread's index
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not errors, errors[:3]


def test_each_caller_reads_back_its_own_writes(stub: Stub) -> None:
    prefix = uuid.uuid4().hex[:8]

    def work(index: int) -> None:
        key = f"{prefix}-{index}"
        for round_ in range(ROUNDS):
            value = f"{index}:{round_}".encode()
            stub.SaveState(
                pb.SaveStateRequest(
                    store_name="state_demo", states=[pb.StateItem(key=key, value=value)]
                ),
                timeout=30,
            )
            got = stub.GetState(pb.GetStateRequest(store_name="state_demo", key=key), timeout=30)
            assert got.data == value, (key, got.data, value)
            assert got.etag == str(round_ + 1)

    run_threads(work)


def test_concurrent_ids_are_unique_and_increasing_per_caller(stub: Stub) -> None:
    key = uuid.uuid4().hex
    seen: list[list[int]] = [[] for _ in range(THREADS)]

    def work(index: int) -> None:
        for _ in range(ROUNDS):
            answer = stub.GetNextId(
                pb.GetNextIdRequest(
                    store_name="sequencer_demo",
                    key=key,
                    options=pb.SequencerOptions(increment=pb.SequencerOptions.STRONG),
                ),
                timeout=30,
            )
            seen[index].append(answer.next_id)

    run_threads(work)
    every = [i for ids in seen for i in ids]
    assert len(set(every)) == len(every) == THREADS * ROUNDS
    assert sorted(every) == list(range(1, THREADS * ROUNDS + 1))
    for ids in seen:
        assert ids == sorted(ids)


def test_only_one_concurrent_caller_gets_a_lock(stub: Stub) -> None:
    resource = uuid.uuid4().hex
    winners: list[int] = []

    def work(index: int) -> None:
        answer = stub.TryLock(
            pb.TryLockRequest(
                store_name="lock_demo", resource_id=resource, lock_owner=f"owner-{index}", expire=30
            ),
            timeout=30,
        )
        if answer.success:
            winners.append(index)

    run_threads(work)
    assert len(winners) == 1
