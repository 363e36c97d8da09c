"""InvokeService benchmark: the same HTTP call through the sidecar and made directly.

    .venv/bin/python bench/invoke_bench.py [--seconds S] [--reps N] [--callers 1,8] [--quick]

A local HTTP/1.1 service (tests/http_service.py, in a process of its own)
answers POST /echo with a small JSON body. In one run, interleaved in every
repetition so that noise on the shared 2-vCPU VM hits both alike:

* sidecar -- InvokeService (100-byte body, one gRPC metadata entry) through
  the real ``layotto start`` with one ``rpcs`` component of type ``http``
  (API process, nng, worker, urllib3 pool, the service);
* direct  -- the same request by the client with urllib3 (a PoolManager,
  kept-alive connections), as an app without a sidecar would make it.

Callers are threads of this process sharing one gRPC channel (sidecar) or
one PoolManager (direct). Reported per case: requests/s and p50 of each,
the throughput ratio sidecar/direct and the p50 the sidecar adds. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import urllib3
from _services import PYTHON, REPO, Processes, Sidecar, _terminate, spawn

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

BODY = b'{"order": 1, "items": ["' + b"x" * 70 + b'"]}'  # 100 bytes
METADATA = (("x-tenant", "bench"),)

CONFIG = """\
listeners:
  grpc: "127.0.0.1:${{LAYOTTO_GRPC_PORT}}"
  http: "127.0.0.1:${{LAYOTTO_HTTP_PORT}}"
rpcs:
  bench_rpc:
    type: http
    workers: {workers}
    metadata:
      targets: '{{"echo": "{url}"}}'
"""


class _Stopped:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def stop(self) -> None:
        _terminate(self.process, 5)


def measure(call: Callable[[], object], callers: int, seconds: float) -> tuple[float, float]:
    """Requests/s and p50 (µs) of ``callers`` threads calling for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    stop_at = [0.0]

    def run(mine: list[float]) -> None:
        start.wait()
        while (began := time.perf_counter()) < stop_at[0]:
            call()
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=run, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    for _ in range(20):  # warm up connections before the window opens
        call()
    stop_at[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [x for mine in latencies for x in mine]
    return len(every) / elapsed, statistics.median(every) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--callers", default="1,8")
    parser.add_argument("--quick", action="store_true", help="1 rep of 1 s")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--workers", type=int, default=1, help="workers of the rpcs component")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.reps = 1.0, 1
    cases = [int(c) for c in args.callers.split(",")]

    processes = Processes()
    try:
        service = spawn(
            [PYTHON, "-m", "tests.http_service"], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        processes.add("http service", _Stopped(service))
        assert service.stdout is not None
        url = service.stdout.readline().strip()
        directory = Path(tempfile.mkdtemp(prefix="layotto-invoke-bench-"))
        config = directory / "invoke.yaml"
        config.write_text(CONFIG.format(url=url, workers=args.workers))
        sidecar = Sidecar(str(config))
        processes.add("sidecar", sidecar)
        sidecar.start()

        request = pb.InvokeServiceRequest(
            id="echo",
            message=pb.CommonInvokeRequest(
                method="echo",
                content_type="application/json",
                http_extension=pb.HTTPExtension(verb=pb.HTTPExtension.POST),
            ),
        )
        request.message.data.value = BODY
        channel = grpc.insecure_channel(sidecar.target)
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        pool = urllib3.PoolManager(maxsize=32, retries=False)
        headers = {"Content-Type": "application/json", **dict(METADATA)}

        def via_sidecar() -> object:
            return stub.InvokeService(request, metadata=METADATA, timeout=10)

        def direct() -> object:
            answer = pool.request("POST", url + "/echo", body=BODY, headers=headers)
            assert answer.status == 200
            return answer.data

        systems = {"sidecar": via_sidecar, "direct": direct}
        runs: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for rep in range(args.reps):
            for callers in cases:
                order = list(systems) if rep % 2 == 0 else list(reversed(systems))
                for name in order:
                    runs.setdefault((callers, name), []).append(
                        measure(systems[name], callers, args.seconds)
                    )
        channel.close()
    finally:
        processes.stop_all()

    report(runs, cases, args)


def report(
    runs: dict[tuple[int, str], list[tuple[float, float]]],
    cases: list[int],
    args: argparse.Namespace,
) -> None:
    """The table for bench/README.md: medians over the reps."""
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.reps} reps x {args.seconds:g} s, "
        "medians over the reps"
    )
    print(
        "| case | sidecar req/s | direct req/s | ratio | "
        "sidecar p50 µs | direct p50 µs | added p50 µs |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    for callers in cases:
        s_rate = statistics.median(r for r, _ in runs[(callers, "sidecar")])
        d_rate = statistics.median(r for r, _ in runs[(callers, "direct")])
        s_p50 = statistics.median(p for _, p in runs[(callers, "sidecar")])
        d_p50 = statistics.median(p for _, p in runs[(callers, "direct")])
        results.append({"callers": callers, "sidecar": [s_rate, s_p50], "direct": [d_rate, d_p50]})
        print(
            f"| InvokeService POST x{callers} | {s_rate:,.0f} | {d_rate:,.0f} | "
            f"x{s_rate / d_rate:.2f} | {s_p50:,.0f} | {d_p50:,.0f} | {s_p50 - d_p50:+,.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
