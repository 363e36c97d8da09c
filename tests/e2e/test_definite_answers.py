"""Calls in flight on a worker killed with SIGKILL, under load: a repeatable
call still gets a definite answer (Unlock), and the in-memory sequencer's
ids stay unique across the kill."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.e2e.test_supervision import pid_of
from tests.e2e.test_upgrade import LISTENERS, RUNTIME
from tests.redis_server import RedisServer
from tests.sidecar import Sidecar, running_sidecar

pytestmark = [pytest.mark.e2e]

Stub = runtime_pb2_grpc.RuntimeStub
KILLS = 3


@dataclass
class Outcomes:
    """What the callers saw; every field is guarded by ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)  # rpc -> "CODE: details"
    answers: dict[str, list[object]] = field(default_factory=dict)  # rpc -> answers

    def failed(self, rpc: str, error: grpc.RpcError) -> None:
        with self.lock:
            self.failures.setdefault(rpc, []).append(f"{error.code().name}: {error.details()}")

    def answered(self, rpc: str, answer: object) -> None:
        with self.lock:
            self.calls += 1
            self.answers.setdefault(rpc, []).append(answer)


class Callers:
    """Threads calling ``round(stub, caller, n)`` until stopped, on one channel each."""

    def __init__(self, target: str, count: int, round_: Callable[[Stub, int, int], None]) -> None:
        self.outcomes = Outcomes()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(target, i, round_), daemon=True)
            for i in range(count)
        ]

    def _run(self, target: str, caller: int, round_: Callable[[Stub, int, int], None]) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = Stub(channel)
            n = 0
            while not self._stop.is_set():
                round_(stub, caller, n)
                n += 1

    def __enter__(self) -> None:
        for thread in self._threads:
            thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a caller hung"

    def wait_for_calls(self, count: int, limit: float = 60) -> None:
        target = self.outcomes.calls + count
        deadline = time.monotonic() + limit
        while self.outcomes.calls < target:
            assert time.monotonic() < deadline, "the callers made no progress"
            time.sleep(0.02)


def kill_under_load(sidecar: Sidecar, callers: Callers, worker: str) -> None:
    callers.wait_for_calls(200)
    for _ in range(KILLS):
        mark = sidecar.mark()
        os.kill(pid_of(sidecar, worker), signal.SIGKILL)
        sidecar.wait_for_log(rf"{worker}: STARTING -> RUNNING", after=mark)
        callers.wait_for_calls(200)


# -- Unlock: repeated inside the sidecar, answered definitely ------------------------


@pytest.fixture
def redis_lock(tmp_path: Path, redis_server: RedisServer) -> Iterator[Sidecar]:
    redis = f"{{redisHost: '{redis_server.address}', maxRetries: 0}}"
    config = tmp_path / "layotto.yaml"
    config.write_text(
        LISTENERS + RUNTIME + f"lock: {{lock_demo: {{type: redis, metadata: {redis}}}}}\n"
    )
    with running_sidecar(config) as sidecar:
        yield sidecar


@pytest.mark.redis
def test_unlocks_in_flight_on_a_killed_worker_answer_success_and_release(
    redis_lock: Sidecar,
) -> None:
    run = uuid.uuid4().hex[:8]
    held: list[tuple[str, str]] = []  # (resource, owner) of every lock won

    def lock_and_unlock(stub: Stub, caller: int, n: int) -> None:
        resource, owner = f"{run}-{caller}-{n}", f"owner-{caller}"
        try:
            won = stub.TryLock(
                pb.TryLockRequest(
                    store_name="lock_demo", resource_id=resource, lock_owner=owner, expire=300
                ),
                timeout=20,
            ).success
        except grpc.RpcError as error:  # TryLock is not repeatable: it may fail cleanly
            callers.outcomes.failed("TryLock", error)
            return
        callers.outcomes.answered("TryLock", won)
        if not won:
            return
        with callers.outcomes.lock:
            held.append((resource, owner))
        request = pb.UnlockRequest(store_name="lock_demo", resource_id=resource, lock_owner=owner)
        try:
            status = stub.Unlock(request, timeout=20).status
        except grpc.RpcError as error:
            callers.outcomes.failed("Unlock", error)
            return
        callers.outcomes.answered("Unlock", pb.UnlockResponse.Status.Name(status))

    callers = Callers(redis_lock.target, 8, lock_and_unlock)
    with callers:
        kill_under_load(redis_lock, callers, "lock_demo#0")
    outcomes = callers.outcomes
    assert outcomes.failures.get("Unlock", []) == []
    assert set(outcomes.answers["Unlock"]) == {"SUCCESS"}
    assert set(outcomes.answers["TryLock"]) == {True}
    assert all("exited while handling" in f for f in outcomes.failures.get("TryLock", []))
    # Every lock an Unlock answered for is free: another owner takes it at once.
    with redis_lock.stub() as stub:
        taken = [
            stub.TryLock(
                pb.TryLockRequest(
                    store_name="lock_demo", resource_id=resource, lock_owner="other", expire=300
                ),
                timeout=20,
            ).success
            for resource, _ in held
        ]
    assert len(taken) == len(held) and all(taken)


# -- in-memory sequencer: no id twice across a kill ----------------------------------


@pytest.fixture
def memory_sequencer(tmp_path: Path) -> Iterator[Sidecar]:
    config = tmp_path / "layotto.yaml"
    config.write_text(
        LISTENERS
        + RUNTIME
        + "sequencer: {sequencer_demo: {type: in-memory, metadata: {segmentStep: '100'}}}\n"
    )
    with running_sidecar(config) as sidecar:
        yield sidecar


INCREMENT = {"STRONG": pb.SequencerOptions.STRONG, "WEAK": pb.SequencerOptions.WEAK}


def test_a_killed_in_memory_sequencer_never_hands_out_an_id_twice(
    memory_sequencer: Sidecar,
) -> None:
    def next_ids(stub: Stub, caller: int, n: int) -> None:
        mode = "STRONG" if caller % 2 else "WEAK"
        request = pb.GetNextIdRequest(
            store_name="sequencer_demo",
            key=mode,
            options=pb.SequencerOptions(increment=INCREMENT[mode]),
        )
        try:
            answer = stub.GetNextId(request, timeout=20).next_id
        except grpc.RpcError as error:  # not repeatable: it may fail cleanly
            callers.outcomes.failed(mode, error)
            return
        callers.outcomes.answered(mode, (caller, answer))

    callers = Callers(memory_sequencer.target, 6, next_ids)
    with callers:
        kill_under_load(memory_sequencer, callers, "sequencer_demo#0")
    outcomes = callers.outcomes
    for mode in INCREMENT:
        failures = outcomes.failures.get(mode, [])
        assert all("exited while handling" in f for f in failures), failures
        answers = outcomes.answers[mode]
        ids = [i for _, i in answers]
        assert len(set(ids)) == len(ids), f"{mode}: {len(ids) - len(set(ids))} ids handed out twice"
        for caller in {c for c, _ in answers}:
            mine = [i for c, i in answers if c == caller]
            assert mine == sorted(mine), f"{mode} ids of caller {caller} went down"
