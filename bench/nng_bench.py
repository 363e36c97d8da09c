"""One nng REQ/REP hop between two processes: pynng's sync Context API
against ``layotto.boundary.nng_exchange.ContextExchange``, side by side.

Each rep runs both ways, in alternating order, against one echo server per
way (a separate process, ipc://, 120-byte messages, one caller). Printed: p50/p99
of a round trip, round trips per second, CPU per round trip of each side, and
the ratios exchange/pynng. The machine is noisy: trust the ratios.

    .venv/bin/python bench/nng_bench.py [--reps 5] [--trips 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pynng

from layotto.boundary.nng_exchange import ContextExchange, limit_threads

MESSAGE = b"x" * 120


def cpu_us(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1e6 / os.sysconf("SC_CLK_TCK")


def serve(way: str, address: str) -> None:
    """The echo server of one way (runs in its own process)."""
    if way == "exchange":
        limit_threads()
    sock = pynng.Rep0()
    sock.listen(address)
    ctx = sock.new_context()
    print("ready", flush=True)
    if way == "exchange":
        exchange = ContextExchange(ctx)
        while True:
            exchange.send(exchange.receive())
    while True:
        ctx.send(ctx.recv())


class Way:
    def __init__(self, way: str, directory: str) -> None:
        self.way = way
        address = f"ipc://{directory}/{way}.ipc"
        self.server = subprocess.Popen(
            [sys.executable, __file__, "--serve", way, address], stdout=subprocess.PIPE
        )
        assert self.server.stdout is not None
        self.server.stdout.readline()
        self.sock = pynng.Req0(resend_time=-1)
        self.sock.dial(address, block=True)
        self.ctx = self.sock.new_context()
        self.exchange = ContextExchange(self.ctx) if way == "exchange" else None

    def trip(self) -> bytes:
        if self.exchange is not None:
            self.exchange.send(MESSAGE)
            return self.exchange.receive(5000)
        self.ctx.send(MESSAGE)
        reply: bytes = self.ctx.recv()
        return reply

    def run(self, trips: int) -> dict[str, float]:
        for _ in range(500):
            self.trip()
        times = []
        me, it = cpu_us(os.getpid()), cpu_us(self.server.pid)
        began = time.perf_counter()
        for _ in range(trips):
            start = time.perf_counter_ns()
            assert self.trip() == MESSAGE
            times.append(time.perf_counter_ns() - start)
        elapsed = time.perf_counter() - began
        times.sort()
        return {
            "p50": times[trips // 2] / 1000,
            "p99": times[int(trips * 0.99)] / 1000,
            "rate": trips / elapsed,
            "client": (cpu_us(os.getpid()) - me) / trips,
            "server": (cpu_us(self.server.pid) - it) / trips,
        }

    def close(self) -> None:
        if self.exchange is not None:
            self.exchange.close()
        else:
            self.ctx.close()
        self.sock.close()
        self.server.kill()
        self.server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--trips", type=int, default=10000)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    # Both ways share this client process, so its nng threads are limited
    # for both: the client CPU difference is the aio handling alone.
    limit_threads()
    results: dict[str, list[dict[str, float]]] = {"pynng": [], "exchange": []}
    with tempfile.TemporaryDirectory(prefix="layotto-nng-bench-") as directory:
        ways = [Way("pynng", directory), Way("exchange", directory)]
        try:
            for rep in range(args.reps):
                for way in ways if rep % 2 == 0 else reversed(ways):
                    results[way.way].append(way.run(args.trips))
        finally:
            for way in ways:
                way.close()
    medians: dict[str, dict[str, Any]] = {
        way: {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        for way, reps in results.items()
    }
    print(f"REQ/REP round trip over ipc, 120 B, 1 caller; median of {args.reps} reps")
    print(
        f"{'way':<9} {'p50 µs':>7} {'p99 µs':>7} {'trips/s':>8} {'client µs':>10} {'server µs':>10}"
    )
    for way, m in medians.items():
        print(
            f"{way:<9} {m['p50']:>7.0f} {m['p99']:>7.0f} {m['rate']:>8.0f} "
            f"{m['client']:>10.0f} {m['server']:>10.0f}"
        )
    a, b = medians["exchange"], medians["pynng"]
    print(
        f"exchange/pynng: p50 x{a['p50'] / b['p50']:.2f}, p99 x{a['p99'] / b['p99']:.2f}, "
        f"trips/s x{a['rate'] / b['rate']:.2f}, client CPU x{a['client'] / b['client']:.2f}, "
        f"server CPU x{a['server'] / b['server']:.2f}"
    )


if __name__ == "__main__":
    main()
