"""The WebSocket endpoint through the real sidecar: the supervisor relays
``/ws`` to the API process; subscribe, watch and ack as JSON messages."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from layotto.boundary.config import parse
from layotto.boundary.specs import ApiSpec
from layotto.proto import runtime_pb2 as pb
from layotto.supervisor import actuator
from layotto.supervisor.http_connections import Connections
from tests.sidecar import REPO, Sidecar, running_sidecar

pytestmark = pytest.mark.trio

PUBSUB = "pub_subs_demo"
STORE = "config_demo"
WAIT = 15  # seconds: the bound of every wait for a message
_names = itertools.count()


def fresh(prefix: str) -> str:
    """Tests share one sidecar: each uses its own topics and groups."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    config = REPO / "configs" / "standalone.yaml"
    with running_sidecar(config, {"LAYOTTO_APP_PORT": "0"}) as running:
        yield running


@asynccontextmanager
async def connect(sidecar: Sidecar) -> AsyncIterator[WebSocketConnection]:
    """A client connection to ``ws://127.0.0.1:<http port>/ws``.

    Like trio_websocket.open_websocket_url, but the test owns the TCP stream:
    when the server closes first (code 1012), trio-websocket's client never
    closes its socket, which pytest reports as an unclosed-socket warning."""
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", sidecar.http_port)
        async with stream:
            with trio.fail_after(WAIT):
                ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/ws")
            try:
                yield ws
            finally:
                with trio.move_on_after(WAIT):
                    await ws.aclose()


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps(message))


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(WAIT):
        message = json.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def subscribe(ws: WebSocketConnection, topic: str) -> None:
    await send(ws, op="subscribe", pubsub=PUBSUB, topic=topic)
    assert await receive(ws) == {"type": "subscribed", "pubsub": PUBSUB, "topic": topic}


async def publish(
    sidecar: Sidecar,
    topic: str,
    data: bytes,
    content_type: str = "text/plain",
    **metadata: str,
) -> None:
    def call() -> None:
        with sidecar.stub() as stub:
            stub.PublishEvent(
                pb.PublishEventRequest(
                    pubsub_name=PUBSUB,
                    topic=topic,
                    data=data,
                    data_content_type=content_type,
                    metadata=metadata,
                ),
                timeout=10,
            )

    await trio.to_thread.run_sync(call)


async def save(sidecar: Sidecar, group: str, **items: str) -> None:
    def call() -> None:
        with sidecar.stub() as stub:
            stub.SaveConfiguration(
                pb.SaveConfigurationRequest(
                    store_name=STORE,
                    app_id="app1",
                    items=[
                        pb.ConfigurationItem(key=k, content=v, group=group, tags={"v": v})
                        for k, v in items.items()
                    ],
                ),
                timeout=10,
            )

    await trio.to_thread.run_sync(call)


async def nothing_within(ws: WebSocketConnection, seconds: float) -> None:
    """Assert that no message comes for ``seconds`` (a negative check, bounded)."""
    with trio.move_on_after(seconds):
        message = await ws.get_message()
        raise AssertionError(f"unexpected message {message!r}")


async def test_events_come_one_at_a_time_with_cloudevent_fields(sidecar: Sidecar) -> None:
    topic = fresh("orders")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        # a TTL becomes the CloudEvent extension "expiration": it comes as metadata
        await publish(sidecar, topic, b"e1", ttlInSeconds="600")
        await publish(sidecar, topic, b"e2")
        first = await receive(ws)
        assert first["id"]
        assert set(first["metadata"]) == {"expiration"}
        assert {k: v for k, v in first.items() if k not in ("id", "metadata")} == {
            "type": "event",
            "pubsub": PUBSUB,
            "topic": topic,
            "source": "runtime",
            "event_type": "com.runtime.event.sent",
            "specversion": "1.0",
            "datacontenttype": "text/plain",
            "data": "e1",
        }
        await nothing_within(ws, 1.0)  # e2 waits for the ack of e1
        await send(ws, op="ack", id=first["id"], status="SUCCESS")
        second = await receive(ws)
        assert (second["type"], second["data"]) == ("event", "e2")
        assert second["id"] != first["id"]
        await send(ws, op="ack", id=second["id"], status="SUCCESS")
        # acknowledged: the same id is no longer waiting
        await send(ws, op="ack", id=second["id"], status="SUCCESS")
        error = await receive(ws)
        assert (error["type"], error["code"]) == ("error", "NOT_FOUND")


async def test_retry_delivers_the_same_event_again(sidecar: Sidecar) -> None:
    topic = fresh("retried")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        await publish(sidecar, topic, b"r1")
        await publish(sidecar, topic, b"r2")
        first = await receive(ws)
        assert first["data"] == "r1"
        await send(ws, op="ack", id=first["id"], status="RETRY")
        again = await receive(ws)
        assert (again["id"], again["data"]) == (first["id"], "r1")
        await send(ws, op="ack", id=again["id"], status="SUCCESS")
        assert (await receive(ws))["data"] == "r2"


async def test_an_id_waiting_on_two_topics_needs_the_topic_in_the_ack(sidecar: Sidecar) -> None:
    one, two = fresh("same-id"), fresh("same-id")
    envelope = json.dumps({"id": "chosen", "data": "x"}).encode()
    async with connect(sidecar) as ws:
        await subscribe(ws, one)
        await subscribe(ws, two)
        for topic in (one, two):
            await publish(sidecar, topic, envelope, content_type="application/cloudevents+json")
        events = [await receive(ws), await receive(ws)]
        assert sorted((e["topic"], e["id"]) for e in events) == [(one, "chosen"), (two, "chosen")]
        await send(ws, op="ack", id="chosen")
        error = await receive(ws)
        assert (error["code"], error["op"]) == ("INVALID_ARGUMENT", "ack")
        assert "several topics" in error["message"]
        await send(ws, op="ack", id="chosen", pubsub=PUBSUB, topic=one, status="RETRY")
        again = await receive(ws)
        assert (again["topic"], again["id"]) == (one, "chosen")
        await send(ws, op="ack", id="chosen", topic=two)
        await send(ws, op="ack", id="chosen", topic=two)  # done already
        assert (await receive(ws))["code"] == "NOT_FOUND"
        await send(ws, op="ack", id="chosen")  # only the one of topic one waits now
        await publish(sidecar, one, b"next")
        assert (await receive(ws))["data"] == "next"


async def test_binary_data_comes_base64(sidecar: Sidecar) -> None:
    topic = fresh("binary")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        await publish(sidecar, topic, b"\xff\x00bin")
        event = await receive(ws)
        assert "data" not in event
        assert event["data_base64"] == "/wBiaW4="
        await send(ws, op="ack", id=event["id"], status="DROP")


async def test_watch_sends_current_values_then_changes(sidecar: Sidecar) -> None:
    group = fresh("g")
    await save(sidecar, group, a="1", b="2")
    async with connect(sidecar) as ws:
        await send(ws, op="watch", store=STORE, app_id="app1", group=group, keys=["a"])
        assert await receive(ws) == {"type": "watching", "store": STORE}
        current = await receive(ws)
        assert current == {
            "type": "configuration",
            "store": STORE,
            "app_id": "app1",
            "items": [
                {"key": "a", "content": "1", "group": group, "label": "default", "tags": {"v": "1"}}
            ],
        }
        await save(sidecar, group, b="ignored", a="2")
        change = await receive(ws)
        assert [(i["key"], i["content"]) for i in change["items"]] == [("a", "2")]


async def test_topics_and_keys_on_one_connection(sidecar: Sidecar) -> None:
    topic, group = fresh("mixed"), fresh("g")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        await send(ws, op="watch", store=STORE, group=group)
        assert await receive(ws) == {"type": "watching", "store": STORE}
        await save(sidecar, group, k="v")
        config = await receive(ws)
        assert (config["type"], config["items"][0]["content"]) == ("configuration", "v")
        await publish(sidecar, topic, b"x")
        event = await receive(ws)
        assert (event["type"], event["data"]) == ("event", "x")


async def test_bad_messages_get_an_error_and_the_connection_stays(sidecar: Sidecar) -> None:
    async with connect(sidecar) as ws:
        await ws.send_message("{not json")
        error = await receive(ws)
        assert (error["type"], error["code"]) == ("error", "INVALID_ARGUMENT")
        assert error["message"].startswith("malformed JSON")
        await send(ws, op="dance")
        error = await receive(ws)
        assert error == {
            "type": "error",
            "code": "INVALID_ARGUMENT",
            "message": "unknown op 'dance': use subscribe, watch or ack",
        }
        await ws.send_message("[1, 2]")
        assert (await receive(ws))["message"] == "a message must be a JSON object"
        await send(ws, op="ack", id="no-such-event", status="SUCCESS")
        error = await receive(ws)
        assert (error["code"], error["op"]) == ("NOT_FOUND", "ack")
        await send(ws, op="ack", id="x", status="MAYBE")
        assert (await receive(ws))["code"] == "INVALID_ARGUMENT"
        # still works
        topic = fresh("after-errors")
        await subscribe(ws, topic)
        await publish(sidecar, topic, b"ok")
        assert (await receive(ws))["data"] == "ok"


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        (
            {"op": "subscribe", "pubsub": "nope", "topic": "t"},
            "INVALID_ARGUMENT",
            "pubsub nope not found",
        ),
        ({"op": "subscribe", "topic": "t"}, "INVALID_ARGUMENT", "pubsubName is required"),
        ({"op": "subscribe", "pubsub": PUBSUB}, "INVALID_ARGUMENT", "topic is required"),
        (
            {"op": "subscribe", "pubsub": PUBSUB, "topic": "t", "metadata": {"a": 1}},
            "INVALID_ARGUMENT",
            "metadata must be an object of strings",
        ),
        (
            {"op": "watch", "store": "nope"},
            "INVALID_ARGUMENT",
            "configuration store nope not found",
        ),
        (
            {"op": "watch", "store": STORE, "keys": "a"},
            "INVALID_ARGUMENT",
            "keys must be an array of strings",
        ),
    ],
)
async def test_invalid_subscriptions_are_refused(
    sidecar: Sidecar, message: dict[str, Any], code: str, text: str
) -> None:
    async with connect(sidecar) as ws:
        await ws.send_message(json.dumps(message))
        assert await receive(ws) == {
            "type": "error",
            "code": code,
            "message": text,
            "op": message["op"],
        }


async def test_second_subscriber_of_a_topic_is_refused(sidecar: Sidecar) -> None:
    topic = fresh("taken")
    async with connect(sidecar) as first, connect(sidecar) as second:
        await subscribe(first, topic)
        await send(second, op="subscribe", pubsub=PUBSUB, topic=topic)
        error = await receive(second)
        assert (error["type"], error["code"], error["op"]) == (
            "error",
            "ALREADY_EXISTS",
            "subscribe",
        )
        # the same connection twice: refused too, and the first one keeps its events
        await send(first, op="subscribe", pubsub=PUBSUB, topic=topic)
        assert (await receive(first))["code"] == "ALREADY_EXISTS"
        await publish(sidecar, topic, b"mine")
        assert (await receive(first))["data"] == "mine"


async def test_leaving_frees_the_topic_and_its_unacknowledged_event(sidecar: Sidecar) -> None:
    topic = fresh("left")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        await publish(sidecar, topic, b"unanswered")
        unanswered = await receive(ws)
    async with connect(sidecar) as ws:
        # The server closes the session just after the connection: until then
        # the topic still has its subscriber.
        with trio.fail_after(WAIT):
            while True:
                await send(ws, op="subscribe", pubsub=PUBSUB, topic=topic)
                answer = await receive(ws)
                if answer["type"] == "subscribed":
                    break
                assert answer["code"] == "ALREADY_EXISTS"
        again = await receive(ws)
        assert (again["id"], again["data"]) == (unanswered["id"], "unanswered")
        await send(ws, op="ack", id=again["id"])


async def test_ws_without_upgrade_is_a_bad_request(sidecar: Sidecar) -> None:
    async def get(path: str, extra: str = "") -> tuple[int, dict[str, Any]]:
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream("127.0.0.1", sidecar.http_port)
            async with stream:
                request = f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
                await stream.send_all(request.encode())
                answer = b""
                while chunk := await stream.receive_some(4096):
                    answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)

    code, body = await get("/ws")
    assert code == 400 and "upgrade" in body["error"]
    code, body = await get("/ws", "Upgrade: h2c\r\nConnection: upgrade\r\n")
    assert code == 400
    code, body = await get("/actuator/nothing")
    assert code == 404 and "/ws" in body["endpoints"]


async def test_resubscribing_at_once_gets_the_next_event(sidecar: Sidecar) -> None:
    topic = fresh("again")
    for round_ in range(3):
        async with connect(sidecar) as ws:
            with trio.fail_after(WAIT):
                while True:  # until the previous connection's session is closed
                    await send(ws, op="subscribe", pubsub=PUBSUB, topic=topic)
                    answer = await receive(ws)
                    if answer["type"] == "subscribed":
                        break
                    assert answer["code"] == "ALREADY_EXISTS"
            # The previous subscriber's reader may still be waiting on the
            # topic: it must not take this event (it would come back only
            # after processingTimeout, 60 s, longer than WAIT).
            await publish(sidecar, topic, f"event {round_}".encode())
            event = await receive(ws)
            assert event["data"] == f"event {round_}"
            await send(ws, op="ack", id=event["id"])


async def test_hot_upgrade_closes_with_1012_and_a_new_connection_works(sidecar: Sidecar) -> None:
    assert sidecar.process is not None
    topic = fresh("upgrade")
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)
        await publish(sidecar, topic, b"unanswered")
        unanswered = await receive(ws)
        assert unanswered["data"] == "unanswered"
        mark = sidecar.mark()
        sidecar.process.send_signal(signal.SIGHUP)
        with trio.fail_after(60), pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1012
        assert "subscribe again" in (closed.value.reason.reason or "")
    await trio.to_thread.run_sync(
        lambda: sidecar.wait_for_log(r"reload: generation \d+ serving", 120, mark)
    )
    async with connect(sidecar) as ws:
        await subscribe(ws, topic)  # the old generation's subscription is gone
        again = await receive(ws)  # never acknowledged: delivered again
        assert (again["id"], again["data"]) == (unanswered["id"], "unanswered")
        await send(ws, op="ack", id=again["id"], status="SUCCESS")
        await publish(sidecar, topic, b"after upgrade")
        event = await receive(ws)
        assert event["data"] == "after upgrade"
        await send(ws, op="ack", id=event["id"], status="SUCCESS")


async def test_stop_closes_with_1012() -> None:
    sidecar = Sidecar(REPO / "configs" / "standalone.yaml", {"LAYOTTO_APP_PORT": "0"})
    try:
        await trio.to_thread.run_sync(sidecar.start)
        assert sidecar.process is not None
        async with connect(sidecar) as ws:
            await subscribe(ws, fresh("stopping"))
            sidecar.process.send_signal(signal.SIGTERM)
            with trio.fail_after(WAIT), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1012
        assert await trio.to_thread.run_sync(sidecar.process.wait, 30) == 0
    finally:
        sidecar.kill()


# -- the supervisor's relay on its own (no sidecar) -------------------------------


class FakeApi:
    generation = 7
    up = True

    def __init__(self, index: int) -> None:
        text = (
            "listeners: {grpc: '127.0.0.1:1', http: '127.0.0.1:2'}\n"
            "hellos: {h: {type: helloworld}}\n"
        )
        self.spec = ApiSpec(parse(text, "x.yaml", environ={}), "", 7, {}, index=index)


class FakeArbiter:
    """Generation 7 with two API processes; the tests serve only #1's socket."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)
        self.apis = [FakeApi(0), FakeApi(1)]
        self.stop_begun = trio.Event()


UPGRADE = (
    b"GET /ws?x=1 HTTP/1.1\r\nHost: sidecar\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nX-Mixed-Case: Kept\r\n\r\n"
)


async def read_until(stream: trio.abc.ReceiveStream, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = await stream.receive_some(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    return data


async def test_relay_without_an_api_socket_is_503(tmp_path: Path) -> None:
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(actuator._serve_one, FakeArbiter(tmp_path), Connections(8), server)
            await client.send_all(UPGRADE)
            answer = b""
            while chunk := await client.receive_some(4096):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert "no API process" in json.loads(body)["error"]


async def test_relay_passes_the_request_and_bytes_both_ways(tmp_path: Path) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(tmp_path / "ws-7-1.sock"))  # #0's is gone (killed): #1 serves
    listening.listen()
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(listening))
    received: list[bytes] = []

    async def api() -> None:
        async with listener, await listener.accept() as upstream:
            # what the client sent after its request head arrives right behind it
            received.append(await read_until(upstream, b"early"))
            await upstream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            received.append(await read_until(upstream, b"ping"))
            await upstream.send_all(b"pong")
        # closing here ends the relay: the client sees the end of the stream

    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(api)
            nursery.start_soon(actuator._serve_one, FakeArbiter(tmp_path), Connections(8), server)
            await client.send_all(UPGRADE + b"early")
            assert await read_until(client, b"\r\n\r\n") == (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
            )
            await client.send_all(b"ping")
            assert await read_until(client, b"pong") == b"pong"
            assert await client.receive_some(4096) == b""
    assert received == [UPGRADE + b"early", b"ping"]
