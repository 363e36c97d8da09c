"""Load generator process of state_bench.py, driven by JSON lines on stdin/stdout.

    {"cmd": "start", "kind": "grpc"|"redis", "target": "host:port", "store": NAME, "key_prefix": P,
     "op": "get"|"save", "callers": N}           -> {"ok": true}   (callers are running)
    {"cmd": "stop", "t0": NS, "t1": NS}          -> {"count": ..., "p50_us": ..., ...}

Each caller is a thread running one blocking call after another: a gRPC stub
(all callers share one channel) or redis-py GET/SET (all share one client and
its connection pool). Every completed call records its end time and latency
(time.monotonic_ns, the system-wide CLOCK_MONOTONIC, so the window [t0, t1]
chosen by the parent process applies here). Only calls that end inside the
window count. Exits at EOF on stdin, i.e. when the bench is gone.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import redis

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

VALUE = b"v" * 100


class Run:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.ends: list[list[int]] = []
        self.lats: list[list[int]] = []
        self.errors = 0
        self.first_error = ""
        self._closers: list[Callable[[], None]] = []

    def _calls(self) -> list[Callable[[], object]]:
        spec = self.spec
        callers = int(spec["callers"])
        # Each system gets its own keys: the baseline's hashes and redis-py's plain
        # strings must not meet in the shared redis-server.
        keys = [f"bench-{spec['key_prefix']}-{spec['op']}-{i}" for i in range(callers)]
        if spec["kind"] == "grpc":
            channel = grpc.insecure_channel(spec["target"])
            self._closers.append(channel.close)
            grpc.channel_ready_future(channel).result(timeout=15)
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            store = spec["store"]
            saves = [
                pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=k, value=VALUE)])
                for k in keys
            ]
            if spec["op"] == "get":
                for request in saves:  # the keys exist, so every GetState returns 100 B
                    stub.SaveState(request, timeout=10)
                gets = [pb.GetStateRequest(store_name=store, key=k) for k in keys]
                return [_bind(stub.GetState, r) for r in gets]
            return [_bind(stub.SaveState, r) for r in saves]
        host, _, port = spec["target"].rpartition(":")
        client = redis.Redis(host=host, port=int(port), decode_responses=False)
        self._closers.append(client.close)
        if spec["op"] == "get":
            for k in keys:
                client.set(k, VALUE)
            return [_bind(client.get, k) for k in keys]
        return [_bind2(client.set, k, VALUE) for k in keys]

    def start(self) -> None:
        for call in self._calls():
            ends: list[int] = []
            lats: list[int] = []
            self.ends.append(ends)
            self.lats.append(lats)
            thread = threading.Thread(target=self._loop, args=(call, ends, lats), daemon=True)
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()

    def _loop(self, call: Callable[[], object], ends: list[int], lats: list[int]) -> None:
        clock = time.monotonic_ns
        stop = self.stop_event.is_set
        while not stop():
            began = clock()
            try:
                call()
            except (grpc.RpcError, redis.RedisError) as exc:
                self.errors += 1
                if not self.first_error:
                    self.first_error = repr(exc)[:300]
                time.sleep(0.001)
                continue
            done = clock()
            ends.append(done)
            lats.append(done - began)

    def stop(self, t0: int, t1: int) -> dict[str, Any]:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
        for close in self._closers:
            close()
        window: list[int] = []
        for ends, lats in zip(self.ends, self.lats, strict=True):
            window.extend(lat for end, lat in zip(ends, lats, strict=True) if t0 <= end <= t1)
        window.sort()
        count = len(window)

        def pct(q: float) -> float | None:
            return window[min(count - 1, int(q * count))] / 1000 if count else None

        return {
            "count": count,
            "seconds": (t1 - t0) / 1e9,
            "rps": count / ((t1 - t0) / 1e9) if t1 > t0 else 0.0,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "errors": self.errors,
            "first_error": self.first_error,
        }


def _bind(function: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: function(arg)


def _bind2(function: Callable[[Any, Any], object], a: Any, b: Any) -> Callable[[], object]:
    return lambda: function(a, b)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us
    run: Run | None = None
    for line in sys.stdin:
        message = json.loads(line)
        if message["cmd"] == "start":
            run = Run(message)
            try:
                run.start()
                answer: dict[str, Any] = {"ok": True}
            except Exception as exc:
                run.stop(0, 0)
                run = None
                answer = {"ok": False, "error": repr(exc)}
        elif message["cmd"] == "stop" and run is not None:
            answer = run.stop(int(message["t0"]), int(message["t1"]))
            run = None
        else:
            answer = {"ok": False, "error": f"unexpected {message!r}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
