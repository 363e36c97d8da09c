"""Storms of subscribers through the real sidecar (in-memory components):
what a burst of clients gets, and what the API process keeps after they left.

    .venv/bin/python bench/storm_bench.py [--websocket 200,600,1000] [--streams 1000]
        [--cycles 3] [--max-streams 512] [--max-websocket 512]

- WebSocket: N clients connect to /ws at once, each watches a configuration
  key and waits for "watching"; counted: watching, refused (HTTP 503),
  dropped (anything else: closed without an answer, a timeout). Then they
  all leave.
- gRPC: ``--cycles`` times, ``--streams`` SubscribeConfiguration streams at
  once (grpc.aio, one connection), then closed; counted by outcome.
- The API process's threads and PSS (/proc/<pid>/smaps_rollup) before the
  storms and after each, once idle threads have ended.

The storms themselves are tests/storm.py (the tests use them too).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
from pathlib import Path

import _services  # noqa: F401  (puts `tests` on sys.path)
import trio

from tests.sidecar import running_sidecar
from tests.storm import (
    STORE,
    api_pid,
    save_watched_key,
    settled,
    stream_storm,
    websocket_storm,
)


def config(max_streams: int, max_websocket: int) -> str:
    return f"""
listeners:
  grpc: "127.0.0.1:${{LAYOTTO_GRPC_PORT}}"
  http: "127.0.0.1:${{LAYOTTO_HTTP_PORT}}"
app: {{grpc_callback_port: 0}}
runtime: {{max_streams: {max_streams}, max_websocket_connections: {max_websocket}}}
config_store: {{{STORE}: {{type: in-memory}}}}
"""


def short(outcomes: collections.Counter[str]) -> dict[str, int]:
    return {key.split(":")[0]: n for key, n in outcomes.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--websocket", default="200,600,1000")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--max-streams", type=int, default=512)
    parser.add_argument("--max-websocket", type=int, default=512)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="layotto-storm-")) / "layotto.yaml"
    path.write_text(config(args.max_streams, args.max_websocket))
    with running_sidecar(path) as sidecar:
        save_watched_key(sidecar)
        pid = api_pid(sidecar)

        async def streams(cycles: int, count: int, report: bool) -> None:
            # grpc.aio wants one event loop per process: every storm runs in this one
            for _ in range(cycles):
                outcomes = await stream_storm(sidecar.target, count)
                threads, pss = await asyncio.to_thread(settled, pid, start[0])
                if report:
                    print(
                        f"{count} streams at once: {short(outcomes)}; after: "
                        f"{threads} threads, PSS {pss / 1024:.1f} MiB"
                    )

        start = settled(pid)
        print(f"API process at start: {start[0]} threads, PSS {start[1] / 1024:.1f} MiB")
        for clients in [int(n) for n in args.websocket.split(",") if n]:
            outcomes = trio.run(websocket_storm, sidecar.http_port, clients)
            threads, pss = settled(pid, start[0])
            print(
                f"{clients} WebSocket clients at once: {short(outcomes)}; after they left: "
                f"{threads} threads, PSS {pss / 1024:.1f} MiB"
            )
        asyncio.run(streams(args.cycles, args.streams, True))
        refusals = [line for line in sidecar.lines if "refused since" in line]
        print(f"refusal log lines: {len(refusals)}")


if __name__ == "__main__":
    main()
