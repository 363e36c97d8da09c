"""What clients hold open has limits and is given back: subscription streams
have a budget of their own (runtime.max_streams) and WebSocket connections
theirs (runtime.max_websocket_connections); beyond either, clients are
refused with a message naming the limit, unary calls keep their threads
however many streams are open, saturation shows in readiness, and the API
process's threads come back when clients leave."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
import trio

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.sidecar import Sidecar, running_sidecar
from tests.storm import (
    STORE,
    WAIT,
    api_pid,
    save_watched_key,
    settled,
    stream_storm,
    thread_names,
    websocket_storm,
)

T = TypeVar("T")
MAX_STREAMS = 600  # more than the 544 threads that used to serve unary calls and streams
MAX_WEBSOCKET = 200

CONFIG = f"""
listeners:
  grpc: "127.0.0.1:${{LAYOTTO_GRPC_PORT}}"
  http: "127.0.0.1:${{LAYOTTO_HTTP_PORT}}"
app: {{grpc_callback_port: 0}}
runtime: {{max_streams: {MAX_STREAMS}, max_websocket_connections: {MAX_WEBSOCKET}}}
state: {{state_demo: {{type: in-memory}}}}
config_store: {{{STORE}: {{type: in-memory}}}}
"""


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    config: Path = tmp_path_factory.mktemp("limits") / "layotto.yaml"
    config.write_text(CONFIG)
    with running_sidecar(config) as running:
        save_watched_key(running)
        yield running


@pytest.fixture(scope="module")
def aio() -> Iterator[Any]:
    """Runs coroutines on one asyncio loop for the module: grpc.aio binds
    itself to the first loop that uses it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    yield run
    loop.call_soon_threadsafe(loop.stop)
    thread.join(WAIT)
    loop.close()


def http_get(sidecar: Sidecar, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{sidecar.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def open_stream(stub: runtime_pb2_grpc.RuntimeStub) -> Any:
    """A SubscribeConfiguration stream that the server has taken: its current
    values have arrived."""
    call = stub.SubscribeConfiguration()
    await call.write(pb.SubscribeConfigurationRequest(store_name=STORE, app_id="app", keys=["k"]))
    first = await call.read()
    assert first.items[0].content == "v", first
    return call


async def open_streams(stub: runtime_pb2_grpc.RuntimeStub, n: int) -> list[Any]:
    async with asyncio.timeout(WAIT):
        return list(await asyncio.gather(*(open_stream(stub) for _ in range(n))))


def test_beyond_the_limit_streams_are_refused_and_unary_calls_keep_their_threads(
    sidecar: Sidecar, aio: Any
) -> None:
    """With more streams open than the old shared pool had threads (544),
    unary calls still answer at once, one stream more is refused with a
    message naming the limit, and readiness says the streams are saturated."""

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(sidecar.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            calls = await open_streams(stub, MAX_STREAMS)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await asyncio.wait_for(open_stream(stub), WAIT)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                details = refused.value.details() or ""
                assert f"{MAX_STREAMS} are open" in details
                assert "runtime.max_streams" in details
                # Unary calls have threads of their own: no wait for a stream to end.
                request = pb.GetStateRequest(store_name="state_demo", key="x")
                await asyncio.gather(*(stub.GetState(request, timeout=10) for _ in range(64)))
                await asyncio.to_thread(
                    sidecar.wait_for_log, r"subscription streams at their limit", WAIT
                )
                code, ready = await asyncio.to_thread(
                    http_get, sidecar, "/actuator/health/readiness"
                )
                assert code == 200  # unary calls are served: ready
                reason = ready["components"]["api"]["details"]["reason"]
                assert "runtime.max_streams" in reason, ready
            finally:
                for call in calls:
                    call.cancel()
            # Saturation ends once streams leave, and new ones are taken again.
            await asyncio.to_thread(
                sidecar.wait_for_log, r"subscription streams below their limit again", WAIT
            )
            for call in await open_streams(stub, 2):
                call.cancel()

    aio(scenario())


def test_beyond_the_limit_websocket_clients_get_503_and_none_is_dropped(
    sidecar: Sidecar,
) -> None:
    """A burst larger than the limit (and than the old listen backlog, 128):
    every client gets an answer, either "watching" or HTTP 503 naming the limit."""
    clients = MAX_WEBSOCKET + 60
    outcomes = trio.run(websocket_storm, sidecar.http_port, clients)
    refusal = (
        f"refused 503: too many WebSocket connections: {MAX_WEBSOCKET} are open, "
        "the limit set by runtime.max_websocket_connections; try again later"
    )
    assert outcomes == {"watching": MAX_WEBSOCKET, refusal: clients - MAX_WEBSOCKET}
    # logged once, not once per refusal
    assert sum("WebSocket connections: 200 are open" in line for line in sidecar.lines) == 1


def test_threads_come_back_after_clients_leave(tmp_path: Path, aio: Any) -> None:
    """Streams and WebSocket clients come and go (storms up to the limits, and
    refused ones beyond): the API process's threads return to within 10 % of
    where they started. (ThreadPoolExecutor kept every stream thread it ever
    started, and the event links a REQ context per thread, for good.)"""
    config = tmp_path / "layotto.yaml"
    config.write_text(CONFIG)
    with running_sidecar(config) as sidecar:  # its own: no thread of another test counted
        save_watched_key(sidecar)
        pid = api_pid(sidecar)
        start_threads, _ = settled(pid)
        for outcome in ("opened", "RESOURCE_EXHAUSTED"):
            assert outcome in str(aio(stream_storm(sidecar.target, MAX_STREAMS + 50)))
        outcomes = trio.run(websocket_storm, sidecar.http_port, MAX_WEBSOCKET + 20)
        assert outcomes["watching"] == MAX_WEBSOCKET
        threads, _ = settled(pid, start_threads)
        assert threads <= start_threads * 1.1, thread_names(pid)
