"""Load-client process of upgrade_bench.py, started with multiprocessing ("spawn").

The parent drives it over a multiprocessing Pipe:

    {"cmd": "start", "target": "host:port", "tag": T, "seq_key": K}  -> {"ok": True}
    {"cmd": "stop"}                                                   -> the records (below)
    {"cmd": "exit"}                                                   -> (exits)

While started, ``persistent`` threads each hold one channel (kept per target
across start/stop, so rounds against several sidecars reuse their
connections) and ``fresh`` threads open a new channel for every single call
(one TCP connection per call, as clients arriving during an upgrade do). Every
thread rotates through SayHello, SaveState+GetState, TryLock+Unlock,
GetNextId (STRONG, one key shared by every process) and GetBulkState, and
checks each answer.

Every call is recorded: start (time.monotonic_ns, system-wide, so the parent's
clock applies), latency, status code (0 = OK, else grpc's numeric code), the
method and the caller kind. A call that returned OK with a wrong answer stays
OK in the records and is listed in ``wrong``; failures keep their message.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import grpc

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

METHODS = ("SayHello", "SaveState", "GetState", "TryLock", "Unlock", "GetNextId", "GetBulkState")
SAY_HELLO, SAVE, GET, TRY_LOCK, UNLOCK, NEXT_ID, BULK = range(len(METHODS))
KINDS = ("persistent", "fresh")
STRONG = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)
# Each channel gets its own TCP connection (grpc's global subchannel pool
# would otherwise share one connection between channels to the same target).
OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
_PR_SET_PDEATHSIG = 1


class Records:
    """Columns of one thread's calls."""

    def __init__(self) -> None:
        self.start = array.array("q")
        self.latency = array.array("q")
        self.code = array.array("b")
        self.method = array.array("b")
        self.kind = array.array("b")
        self.failures: list[dict[str, Any]] = []
        self.wrong: list[dict[str, Any]] = []
        self.ids = array.array("q")


class Caller:
    def __init__(
        self,
        client: Client,
        *,
        kind: int,
        index: int,
        target: str,
        tag: str,
        seq_key: str,
        stub: runtime_pb2_grpc.RuntimeStub | None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.target = target
        self.name = f"{tag}-c{client.index}-{KINDS[kind][0]}{index}"
        self.key = f"{client.run}-{self.name}"
        self.seq_key = seq_key
        self.stub = stub
        self.index = index
        self.records = Records()
        self.last_id = 0
        self.saved: bytes | None = None  # the value this caller's key surely holds
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        n = self.index
        stop = self.client.stop_event.is_set
        while not stop():
            self._round(n)
            n += 1

    def _call(self, method: int, request: Any) -> Any:
        began = time.monotonic_ns()
        channel = None
        try:
            if self.stub is not None:
                stub = self.stub
            else:
                channel = grpc.insecure_channel(self.target, options=OPTIONS)
                stub = runtime_pb2_grpc.RuntimeStub(channel)
            answer = getattr(stub, METHODS[method])(request, timeout=self.client.timeout)
            code = 0
        except grpc.RpcError as error:
            status = error.code()
            code = status.value[0] if status is not None else -1
            details = error.details() if hasattr(error, "details") else str(error)
            self.records.failures.append(
                {
                    "start_ns": began,
                    "end_ns": time.monotonic_ns(),
                    "method": METHODS[method],
                    "kind": KINDS[self.kind],
                    "caller": self.name,
                    "code": status.name if status is not None else "?",
                    "details": details,
                }
            )
            answer = None
        ended = time.monotonic_ns()
        if channel is not None:
            channel.close()
        records = self.records
        records.start.append(began)
        records.latency.append(ended - began)
        records.code.append(code)
        records.method.append(method)
        records.kind.append(self.kind)
        return answer

    def _wrong(self, method: int, text: str) -> None:
        self.records.wrong.append(
            {
                "at_ns": time.monotonic_ns(),
                "method": METHODS[method],
                "caller": self.name,
                "what": text,
            }
        )

    def _round(self, n: int) -> None:
        step = n % 5
        if step == 0:
            hello = pb.SayHelloRequest(service_name="helloworld", name=self.name)
            answer = self._call(SAY_HELLO, hello)
            if answer is not None and answer.hello != f"greeting, {self.name}":
                self._wrong(SAY_HELLO, f"hello {answer.hello!r}")
        elif step == 1:
            value = f"{self.name}:{n}".encode()
            item = pb.StateItem(key=self.key, value=value)
            saved = self._call(SAVE, pb.SaveStateRequest(store_name="state_demo", states=[item]))
            # A failed save may or may not have been applied: the value is unknown.
            self.saved = value if saved is not None else None
            if saved is None:
                return
            got = self._call(GET, pb.GetStateRequest(store_name="state_demo", key=self.key))
            if got is not None and got.data != value:
                self._wrong(GET, f"{self.key}: {got.data!r} != {value!r}")
        elif step == 2:
            resource = f"{self.key}-{n}"  # a fresh resource: a failed call may have applied
            won = self._call(
                TRY_LOCK,
                pb.TryLockRequest(
                    store_name="lock_demo", resource_id=resource, lock_owner=self.name, expire=30
                ),
            )
            if won is None:
                return
            if not won.success:
                self._wrong(TRY_LOCK, f"{resource}: not granted")
                return
            unlock = pb.UnlockRequest(
                store_name="lock_demo", resource_id=resource, lock_owner=self.name
            )
            status = self._call(UNLOCK, unlock)
            if status is not None and status.status != pb.UnlockResponse.SUCCESS:
                self._wrong(UNLOCK, f"{resource}: status {status.status}")
        elif step == 3:
            answer = self._call(
                NEXT_ID,
                pb.GetNextIdRequest(store_name="sequencer_demo", key=self.seq_key, options=STRONG),
            )
            if answer is None:
                return
            if answer.next_id <= self.last_id:
                self._wrong(NEXT_ID, f"id {answer.next_id} after {self.last_id}")
            self.last_id = answer.next_id
            self.records.ids.append(answer.next_id)
        else:
            answer = self._call(
                BULK, pb.GetBulkStateRequest(store_name="state_demo", keys=[self.key])
            )
            if answer is not None and self.saved is not None:
                data = answer.items[0].data if len(answer.items) == 1 else None
                if data != self.saved:
                    self._wrong(BULK, f"{self.key}: {data!r} != {self.saved!r}")


class Client:
    def __init__(self, index: int, persistent: int, fresh: int, timeout: float, run: str) -> None:
        self.index = index
        self.persistent = persistent
        self.fresh = fresh
        self.timeout = timeout
        self.run = run
        self.stop_event = threading.Event()
        self.callers: list[Caller] = []
        self.channels: dict[tuple[str, int], grpc.Channel] = {}

    def start(self, target: str, tag: str, seq_key: str) -> None:
        self.stop_event.clear()
        self.callers = []
        for i in range(self.persistent):
            channel = self.channels.get((target, i))
            if channel is None:
                channel = grpc.insecure_channel(target, options=OPTIONS)
                self.channels[(target, i)] = channel
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            self.callers.append(
                Caller(self, kind=0, index=i, target=target, tag=tag, seq_key=seq_key, stub=stub)
            )
        for i in range(self.fresh):
            self.callers.append(
                Caller(self, kind=1, index=i, target=target, tag=tag, seq_key=seq_key, stub=None)
            )
        for caller in self.callers:
            caller.thread.start()

    def stop(self, join_timeout: float) -> dict[str, Any]:
        self.stop_event.set()
        for caller in self.callers:
            caller.thread.join(timeout=join_timeout)
        hung = [c.name for c in self.callers if c.thread.is_alive()]
        merged = Records()
        for caller in self.callers:
            r = caller.records
            for column in ("start", "latency", "code", "method", "kind", "ids"):
                getattr(merged, column).extend(getattr(r, column))
            merged.failures += r.failures
            merged.wrong += r.wrong
        self.callers = []
        return {
            "pid": os.getpid(),
            "index": self.index,
            "hung": hung,
            "start": merged.start,
            "latency": merged.latency,
            "code": merged.code,
            "method": merged.method,
            "kind": merged.kind,
            "ids": merged.ids,
            "failures": merged.failures,
            "wrong": merged.wrong,
        }

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the bench dies, even by SIGKILL (it spawns from its main thread)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def client_main(conn: Connection, settings: dict[str, Any]) -> None:
    """settings: index, parent (pid), persistent, fresh, timeout (per call), run (an id)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the bench stops us in order
    _die_with_parent(settings["parent"])
    timeout = float(settings["timeout"])
    client = Client(
        settings["index"], settings["persistent"], settings["fresh"], timeout, settings["run"]
    )
    conn.send({"ready": True, "pid": os.getpid()})
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message["cmd"] == "start":
                client.start(message["target"], message["tag"], message["seq_key"])
                conn.send({"ok": True})
            elif message["cmd"] == "stop":
                conn.send(client.stop(join_timeout=timeout + 5))
            else:
                client.stop(join_timeout=2)
                break
    finally:
        client.close()
