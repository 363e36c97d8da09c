"""Open subscription streams have a budget of their own (runtime.max_streams):
one more is refused with RESOURCE_EXHAUSTED naming the limit, unary calls keep
their threads however many streams are open, saturation is visible in
readiness, and what a client held is released when it leaves.

Streams are opened with grpc.aio: one event loop holds hundreds of them
without a client thread each."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.sidecar import Sidecar, running_sidecar

STORE = "config_demo"
MAX_STREAMS = 600  # more than the 544 threads that used to serve unary calls and streams
WAIT = 60.0  # the bound of each wait below, generous on 2 shared cores

CONFIG = f"""
listeners:
  grpc: "127.0.0.1:${{LAYOTTO_GRPC_PORT}}"
  http: "127.0.0.1:${{LAYOTTO_HTTP_PORT}}"
app: {{grpc_callback_port: 0}}
runtime: {{max_streams: {MAX_STREAMS}, max_websocket_connections: 20}}
state: {{state_demo: {{type: in-memory}}}}
config_store: {{{STORE}: {{type: in-memory}}}}
pub_subs: {{pub_subs_demo: {{type: in-memory}}}}
"""


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    config: Path = tmp_path_factory.mktemp("limits") / "layotto.yaml"
    config.write_text(CONFIG)
    with running_sidecar(config) as running:
        with running.stub() as stub:
            item = pb.ConfigurationItem(key="k", content="v")
            stub.SaveConfiguration(
                pb.SaveConfigurationRequest(store_name=STORE, app_id="app", items=[item]),
                timeout=WAIT,
            )
        yield running


def http_get(sidecar: Sidecar, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{sidecar.http_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def subscription() -> pb.SubscribeConfigurationRequest:
    return pb.SubscribeConfigurationRequest(store_name=STORE, app_id="app", keys=["k"])


async def open_stream(stub: runtime_pb2_grpc.RuntimeStub) -> Any:
    """A SubscribeConfiguration stream that the server has taken: its current
    values have arrived."""
    call = stub.SubscribeConfiguration()
    await call.write(subscription())
    first = await call.read()
    assert first.items[0].content == "v", first
    return call


async def open_streams(stub: runtime_pb2_grpc.RuntimeStub, n: int) -> list[Any]:
    async with asyncio.timeout(WAIT):
        return list(await asyncio.gather(*(open_stream(stub) for _ in range(n))))


async def close_streams(calls: list[Any]) -> None:
    for call in calls:
        call.cancel()


def test_beyond_the_limit_streams_are_refused_and_unary_calls_keep_their_threads(
    sidecar: Sidecar,
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
                await asyncio.gather(
                    *(
                        stub.GetState(
                            pb.GetStateRequest(store_name="state_demo", key="x"), timeout=10
                        )
                        for _ in range(64)
                    )
                )
                sidecar.wait_for_log(r"subscription streams at their limit", WAIT)
                code, ready = await asyncio.to_thread(
                    http_get, sidecar, "/actuator/health/readiness"
                )
                assert code == 200  # unary calls are served: ready
                reason = ready["components"]["api"]["details"]["reason"]
                assert "runtime.max_streams" in reason, ready
            finally:
                await close_streams(calls)
            # Saturation ends once streams leave, and new ones are taken again.
            sidecar.wait_for_log(r"subscription streams below their limit again", WAIT)
            for call in await open_streams(stub, 2):
                call.cancel()

    asyncio.run(scenario())
