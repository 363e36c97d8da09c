"""Storms of subscribers for tests and bench/storm_bench.py: many WebSocket
clients or SubscribeConfiguration streams at once, what each got, and the API
process's threads and memory from /proc.

Streams are opened with grpc.aio (one event loop holds hundreds of them
without a client thread each); WebSocket clients are trio tasks.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import trio
from trio_websocket import ConnectionRejected, wrap_client_stream

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.sidecar import Sidecar

STORE = "config_demo"
WAIT = 60.0  # the bound of each client's wait, generous on 2 shared cores
WATCH = {"op": "watch", "store": STORE, "app_id": "app", "keys": ["k"]}


def save_watched_key(sidecar: Sidecar) -> None:
    """The key every storm watches: a subscription answers with it at once."""
    with sidecar.stub() as stub:
        item = pb.ConfigurationItem(key="k", content="v")
        request = pb.SaveConfigurationRequest(store_name=STORE, app_id="app", items=[item])
        stub.SaveConfiguration(request, timeout=WAIT)


def api_pid(sidecar: Sidecar) -> int:
    for line in sidecar.cli("status").stdout.splitlines():
        cells = line.split()
        if cells and cells[0].startswith("api@"):
            return int(cells[2])
    raise LookupError("no API process in `layotto status`")


def threads_of(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def thread_names(pid: int) -> collections.Counter[str]:
    """How many threads of each name (the kernel keeps 15 characters)."""
    return collections.Counter(
        (task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()
    )


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise LookupError("no Pss in smaps_rollup")


def settled(pid: int, threads: int | None = None, limit: float = 30.0) -> tuple[int, int]:
    """(threads, PSS KiB) once the process is back within 10 % of ``threads``
    (idle threads end after a few seconds: stream threads 2 s, trio's 10 s),
    or after ``limit``; at once when ``threads`` is None."""
    deadline = time.monotonic() + limit
    while threads is not None and time.monotonic() < deadline and threads_of(pid) > threads * 1.1:
        time.sleep(0.5)  # polling /proc: no event says "threads have exited"
    return threads_of(pid), pss_kib(pid)


async def websocket_storm(port: int, clients: int) -> collections.Counter[str]:
    """``clients`` connect to /ws at once and watch the key; once every one
    has its answer, they all leave. Outcomes: "watching", "refused <status>:
    <body>", or "dropped: <error>" (closed without an answer, a timeout)."""
    outcomes: collections.Counter[str] = collections.Counter()
    everyone_answered = trio.Event()

    def count(outcome: str) -> None:
        outcomes[outcome] += 1
        if sum(outcomes.values()) == clients:
            everyone_answered.set()

    async def one() -> None:
        try:
            with trio.fail_after(WAIT):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream, trio.open_nursery() as nursery:
                    try:
                        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/ws")
                    except ConnectionRejected as rejected:
                        body = json.loads(rejected.body or b"{}").get("error", "")
                        count(f"refused {rejected.status_code}: {body}")
                        return
                    await ws.send_message(json.dumps(WATCH))
                    while json.loads(await ws.get_message()).get("type") != "watching":
                        pass
                    count("watching")
                    await everyone_answered.wait()
                    await ws.aclose()
        except Exception as exc:
            rejected = exc.split(ConnectionRejected)[0] if isinstance(exc, ExceptionGroup) else None
            if rejected is None:
                count(f"dropped: {exc!r}"[:100])
                return
            first: Any = rejected.exceptions[0]  # the nursery grouped it
            body = json.loads(first.body or b"{}").get("error", "")
            count(f"refused {first.status_code}: {body}")

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(one)
    return outcomes


async def stream_storm(target: str, streams: int) -> collections.Counter[str]:
    """``streams`` SubscribeConfiguration streams at once on one connection,
    each waiting for its first answer; then all are cancelled. Outcomes:
    "opened", a status code's name with its details, or "error: ..."."""
    outcomes: collections.Counter[str] = collections.Counter()
    request = pb.SubscribeConfigurationRequest(store_name=STORE, app_id="app", keys=["k"])
    async with grpc.aio.insecure_channel(target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)

        async def one() -> Any:
            call = stub.SubscribeConfiguration()
            try:
                await call.write(request)
                await asyncio.wait_for(call.read(), WAIT)
                outcomes["opened"] += 1
                return call
            except grpc.aio.AioRpcError as error:
                outcomes[f"{error.code().name}: {error.details()}"] += 1
            except Exception as exc:
                outcomes[f"error: {exc!r}"[:100]] += 1
            call.cancel()
            return None

        calls = await asyncio.gather(*(one() for _ in range(streams)))
        for call in calls:
            if call is not None:
                call.cancel()
    return outcomes
