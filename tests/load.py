"""Continuous gRPC load for end-to-end tests: counts calls, failures and wrong answers.

Persistent callers reuse one channel; fresh callers open a new connection
per call (as clients arriving during an upgrade do). Each caller rotates
through every implemented rpc and checks what comes back.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

STRONG = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)


@dataclass
class LoadResult:
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # time.monotonic() of each failure
    wrong: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    by_code: Counter[str] = field(default_factory=Counter)


class Load:
    def __init__(
        self, target: str, persistent: int = 4, fresh: int = 2, timeout: float = 20.0
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._persistent, args=(i,), daemon=True)
            for i in range(persistent)
        ]
        self._threads += [
            threading.Thread(target=self._fresh, args=(i,), daemon=True) for i in range(fresh)
        ]
        self.run_id = uuid.uuid4().hex[:8]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads), "a load thread hung"
        return self.result

    def wait_for_calls(self, count: int, limit: float = 60) -> None:
        """Block until at least ``count`` more calls succeeded (load is flowing)."""
        target = self.result.calls + count
        deadline = time.monotonic() + limit
        while self.result.calls < target:
            assert time.monotonic() < deadline, "load made no progress"
            time.sleep(0.05)

    def _record(self, ok: bool, what: str = "", code: str = "") -> None:
        with self._lock:
            if ok:
                self.result.calls += 1
            else:
                self.result.failures.append(what)
                self.result.failed_at.append(time.monotonic())
                self.result.by_code[code] += 1

    def _one_round(
        self, stub: runtime_pb2_grpc.RuntimeStub, name: str, n: int, last_id: list[int]
    ) -> None:
        key = f"{self.run_id}-{name}"
        step = n % 5
        try:
            if step == 0:
                answer = stub.SayHello(
                    pb.SayHelloRequest(service_name="helloworld", name=name), timeout=self.timeout
                )
                if answer.hello != f"greeting, {name}":
                    self.result.wrong.append(f"SayHello {answer.hello!r}")
            elif step == 1:
                value = f"{name}:{n}".encode()
                stub.SaveState(
                    pb.SaveStateRequest(
                        store_name="state_demo", states=[pb.StateItem(key=key, value=value)]
                    ),
                    timeout=self.timeout,
                )
                got = stub.GetState(
                    pb.GetStateRequest(store_name="state_demo", key=key), timeout=self.timeout
                )
                if got.data != value:
                    self.result.wrong.append(f"GetState {key}: {got.data!r} != {value!r}")
            elif step == 2:
                # a fresh resource per round: a call that failed may still have been applied
                key = f"{key}-{n}"
                won = stub.TryLock(
                    pb.TryLockRequest(
                        store_name="lock_demo", resource_id=key, lock_owner=name, expire=30
                    ),
                    timeout=self.timeout,
                ).success
                status = stub.Unlock(
                    pb.UnlockRequest(store_name="lock_demo", resource_id=key, lock_owner=name),
                    timeout=self.timeout,
                )
                if not won or status.status != pb.UnlockResponse.SUCCESS:
                    self.result.wrong.append(f"lock {key}: won={won} unlock={status.status}")
            elif step == 3:
                next_id = stub.GetNextId(
                    pb.GetNextIdRequest(
                        store_name="sequencer_demo", key=self.run_id, options=STRONG
                    ),
                    timeout=self.timeout,
                ).next_id
                if next_id <= last_id[0]:
                    self.result.wrong.append(f"id {next_id} after {last_id[0]}")
                last_id[0] = next_id
                with self._lock:
                    self.result.ids.append(next_id)
            else:
                stub.GetBulkState(
                    pb.GetBulkStateRequest(store_name="state_demo", keys=[key]),
                    timeout=self.timeout,
                )
        except grpc.RpcError as error:
            code = error.code().name if error.code() else "?"
            self._record(False, f"{code}: {error.details()}", code)
            return
        self._record(True)

    def _persistent(self, index: int) -> None:
        last_id = [0]
        with grpc.insecure_channel(self.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            n = index
            while not self._stop.is_set():
                self._one_round(stub, f"p{index}", n, last_id)
                n += 1

    def _fresh(self, index: int) -> None:
        last_id = [0]
        n = index
        options = [("grpc.use_local_subchannel_pool", 1)]
        while not self._stop.is_set():
            with grpc.insecure_channel(self.target, options=options) as channel:
                self._one_round(runtime_pb2_grpc.RuntimeStub(channel), f"f{index}", n, last_id)
            n += 1
