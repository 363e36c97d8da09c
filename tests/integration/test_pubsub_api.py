"""Pub/sub through the real sidecar: PublishEvent, delivery to the app's
AppCallback server, SubscribeTopicEvents streams; on both backends."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layotto.proto import appcallback_pb2 as cb
from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.app_server import DROP, RETRY, SUCCESS, App
from tests.sidecar import Sidecar, running_sidecar

PUBSUB = "pub_subs_demo"
APP_TOPICS = ["orders", "retried", "dropped", "failing", "ordered", "crash"]
_topics = itertools.count()


def write_config(path: Path, backend: str, app_port: int, redis_addr: str = "") -> Path:
    metadata = {"processingTimeout": "2s", "redeliverInterval": "0.5s"}
    if backend == "redis":
        metadata["redisHost"] = redis_addr
    config = {
        "app": {"app_id": "app1", "grpc_callback_port": app_port},
        "listeners": {
            "grpc": "127.0.0.1:${LAYOTTO_GRPC_PORT}",
            "http": "127.0.0.1:${LAYOTTO_HTTP_PORT}",
        },
        "pub_subs": {PUBSUB: {"type": backend, "metadata": metadata}},
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture(
    scope="module", params=["in-memory", pytest.param("redis", marks=pytest.mark.redis)]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def app(backend: str) -> Iterator[App]:
    server = App(PUBSUB, APP_TOPICS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sidecar(
    backend: str, app: App, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Sidecar]:
    addr = request.getfixturevalue("redis_server").address if backend == "redis" else ""
    config = write_config(tmp_path_factory.mktemp("cfg") / "pubsub.yaml", backend, app.port, addr)
    with running_sidecar(config) as running:
        app.wait_until(lambda a: a.listed > 0)
        yield running


@pytest.fixture(scope="module")
def stub(sidecar: Sidecar) -> Iterator[runtime_pb2_grpc.RuntimeStub]:
    with grpc.insecure_channel(sidecar.target) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


def publish(stub: runtime_pb2_grpc.RuntimeStub, topic: str, data: bytes, **kw: str) -> None:
    stub.PublishEvent(
        pb.PublishEventRequest(
            pubsub_name=PUBSUB, topic=topic, data=data, data_content_type="text/plain", **kw
        ),
        timeout=10,
    )


@pytest.fixture(autouse=True)
def fresh_app_policy(app: App) -> Iterator[None]:
    app.decide = lambda event: SUCCESS
    yield
    app.decide = lambda event: SUCCESS


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            pb.PublishEventRequest(topic="t"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pubsub name is empty",
        ),
        (
            pb.PublishEventRequest(pubsub_name=PUBSUB),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"topic is empty in pubsub {PUBSUB}",
        ),
        (
            pb.PublishEventRequest(pubsub_name="nope", topic="t"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "pubsub nope not found",
        ),
    ],
)
def test_publish_validation(
    stub: runtime_pb2_grpc.RuntimeStub,
    request_: pb.PublishEventRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        stub.PublishEvent(request_, timeout=10)
    assert caught.value.code() == code
    assert caught.value.details() == message


def test_app_receives_a_cloudevent(stub: runtime_pb2_grpc.RuntimeStub, app: App) -> None:
    publish(stub, "orders", b"order 1")
    app.wait_until(lambda a: b"order 1" in a.data("orders"))
    event = next(e for e in app.events if e.data == b"order 1")
    assert (event.source, event.type, event.spec_version) == (
        "runtime",
        "com.runtime.event.sent",
        "1.0",
    )
    assert (event.topic, event.pubsub_name, event.data_content_type) == (
        "orders",
        PUBSUB,
        "text/plain",
    )
    assert event.id


def test_retry_redelivers_and_keeps_order(stub: runtime_pb2_grpc.RuntimeStub, app: App) -> None:
    attempts: dict[bytes, int] = {}

    def decide(event: cb.TopicEventRequest) -> int:
        attempts[event.data] = attempts.get(event.data, 0) + 1
        return RETRY if event.data == b"r1" and attempts[event.data] < 3 else SUCCESS

    app.decide = decide
    publish(stub, "retried", b"r1")
    publish(stub, "retried", b"r2")
    app.wait_until(lambda a: b"r2" in a.data("retried"))
    assert app.data("retried") == [b"r1", b"r1", b"r1", b"r2"]


def test_app_error_redelivers(stub: runtime_pb2_grpc.RuntimeStub, app: App) -> None:
    failed = threading.Event()

    def decide(event: cb.TopicEventRequest) -> int:
        if not failed.is_set():
            failed.set()
            raise RuntimeError("the app broke")
        return SUCCESS

    app.decide = decide
    publish(stub, "failing", b"f1")
    app.wait_until(lambda a: a.data("failing") == [b"f1", b"f1"])


def test_drop_is_not_redelivered(stub: runtime_pb2_grpc.RuntimeStub, app: App) -> None:
    app.decide = lambda event: DROP if event.data == b"d1" else SUCCESS
    publish(stub, "dropped", b"d1")
    publish(stub, "dropped", b"d2")
    app.wait_until(lambda a: b"d2" in a.data("dropped"))
    # Longer than processingTimeout + redeliverInterval: a claim would have happened.
    publish(stub, "orders", b"marker")
    app.wait_until(lambda a: b"marker" in a.data("orders"))
    assert app.data("dropped") == [b"d1", b"d2"]


def test_per_topic_order(stub: runtime_pb2_grpc.RuntimeStub, app: App) -> None:
    sent = [f"m{i}".encode() for i in range(50)]
    for data in sent:
        publish(stub, "ordered", data)
    app.wait_until(lambda a: len(a.data("ordered")) >= 50)
    assert app.data("ordered") == sent


class Stream:
    """A SubscribeTopicEvents client: send() requests, next() responses."""

    def __init__(self, stub: runtime_pb2_grpc.RuntimeStub, topic: str) -> None:
        self.requests: queue.Queue[pb.SubscribeTopicEventsRequest | None] = queue.Queue()
        self.responses: queue.Queue[pb.SubscribeTopicEventsResponse | grpc.RpcError] = queue.Queue()
        self.requests.put(
            pb.SubscribeTopicEventsRequest(
                initial_request=pb.SubscribeTopicEventsRequestInitial(
                    pubsub_name=PUBSUB, topic=topic
                )
            )
        )
        self.call = stub.SubscribeTopicEvents(iter(self.requests.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.put(response)
        except grpc.RpcError as error:
            self.responses.put(error)

    def next(self, timeout: float = 10) -> pb.SubscribeTopicEventsResponse:
        item = self.responses.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def answer(self, event_id: str, status: int) -> None:
        self.requests.put(
            pb.SubscribeTopicEventsRequest(
                event_processed=pb.SubscribeTopicEventsRequestProcessed(
                    id=event_id,
                    status=cb.TopicEventResponse(status=status),  # type: ignore[arg-type]
                )
            )
        )

    def close(self) -> None:
        self.call.cancel()
        self.requests.put(None)


def test_stream_delivers_and_retry_redelivers(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"stream-{next(_topics)}"
    stream = Stream(stub, topic)
    try:
        assert stream.next().HasField("initial_response")
        publish(stub, topic, b"s1")
        publish(stub, topic, b"s2")
        first = stream.next().event_message
        assert first.data == b"s1" and first.topic == topic
        stream.answer(first.id, RETRY)
        again = stream.next().event_message
        assert (again.data, again.id) == (b"s1", first.id)
        stream.answer(again.id, SUCCESS)
        second = stream.next().event_message
        assert second.data == b"s2"
        stream.answer(second.id, SUCCESS)
    finally:
        stream.close()


def test_stream_needs_an_initial_request(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    requests = iter(
        [
            pb.SubscribeTopicEventsRequest(
                event_processed=pb.SubscribeTopicEventsRequestProcessed(id="x")
            )
        ]
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.SubscribeTopicEvents(requests, timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "initial request is required"


def test_second_subscriber_of_a_topic_is_refused(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"stream-{next(_topics)}"
    first = Stream(stub, topic)
    try:
        assert first.next().HasField("initial_response")
        second = Stream(stub, topic)
        with pytest.raises(grpc.RpcError) as caught:
            second.next()
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        first.close()


def test_streams_are_independent(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    one, two = f"stream-{next(_topics)}", f"stream-{next(_topics)}"
    a, b = Stream(stub, one), Stream(stub, two)
    try:
        assert a.next().HasField("initial_response") and b.next().HasField("initial_response")
        a.close()
        publish(stub, two, b"still here")
        event = b.next().event_message
        assert event.data == b"still here"
        b.answer(event.id, SUCCESS)
    finally:
        a.close()
        b.close()


def test_unacknowledged_stream_event_comes_back_to_the_next_subscriber(
    stub: runtime_pb2_grpc.RuntimeStub,
) -> None:
    topic = f"stream-{next(_topics)}"
    first = Stream(stub, topic)
    assert first.next().HasField("initial_response")
    publish(stub, topic, b"unanswered")
    assert first.next().event_message.data == b"unanswered"
    first.close()  # leaves without answering
    second = Stream(stub, topic)
    try:
        assert second.next().HasField("initial_response")
        event = second.next(timeout=20).event_message
        assert event.data == b"unanswered"
        second.answer(event.id, SUCCESS)
    finally:
        second.close()


def pubsub_worker_pid(sidecar: Sidecar) -> int:
    for line in sidecar.cli("status").stdout.splitlines():
        cells = line.split()
        if cells and cells[0].startswith(PUBSUB + "#"):
            return int(cells[2])
    raise AssertionError("no pub/sub worker in status")


def test_worker_crash_before_ack_redelivers(
    backend: str, sidecar: Sidecar, stub: runtime_pb2_grpc.RuntimeStub, app: App
) -> None:
    holding, release = threading.Event(), threading.Event()

    def decide(event: cb.TopicEventRequest) -> int:
        if event.data == b"c1" and not holding.is_set():
            holding.set()
            release.wait(20)  # the app is busy while the worker dies
        return SUCCESS

    app.decide = decide
    publish(stub, "crash", b"c1")
    assert holding.wait(15)
    mark = sidecar.mark()
    os.kill(pubsub_worker_pid(sidecar), signal.SIGKILL)
    sidecar.wait_for_log(r"pub_subs_demo#\d+: RUNNING -> BACKOFF", after=mark)
    release.set()  # its SUCCESS reaches a dead worker: never acknowledged
    if backend == "redis":
        app.wait_until(lambda a: a.data("crash").count(b"c1") >= 2, timeout=30)
    else:
        # An in-memory topic dies with its worker (by design); the
        # replacement serves new messages.
        sidecar.wait_for_log(r"pub_subs_demo#\d+: STARTING -> RUNNING", after=mark)
        publish(stub, "crash", b"c2")
        app.wait_until(lambda a: b"c2" in a.data("crash"), timeout=30)
        assert app.data("crash") == [b"c1", b"c2"]


def test_app_starting_after_the_sidecar_gets_earlier_messages_and_restarts_are_followed(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    addr = request.getfixturevalue("redis_server").address if backend == "redis" else ""
    late = App(PUBSUB, ["early"])  # its port is chosen, but nothing listens yet
    config = write_config(tmp_path / "late.yaml", backend, late.port, addr)
    with running_sidecar(config) as sc, sc.stub() as stub:
        publish(stub, "early", b"before the app")
        late.start()
        try:
            late.wait_until(lambda a: a.data("early") == [b"before the app"])
        finally:
            late.stop()
        # The app comes back subscribed to another topic as well.
        again = App(PUBSUB, ["early", "later"], port=late.port).start()
        try:
            publish(stub, "later", b"new topic")
            again.wait_until(lambda a: b"new topic" in a.data("later"), timeout=20)
        finally:
            again.stop()


def test_after_the_api_is_killed_a_topic_can_be_subscribed_again_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    addr = request.getfixturevalue("redis_server").address if backend == "redis" else ""
    config = write_config(tmp_path / "api-kill.yaml", backend, 0, addr)
    with running_sidecar(config) as sc, sc.stub() as stub:
        first = Stream(stub, "held")
        assert first.next().HasField("initial_response")
        _, api = sc.serving_api()  # the one holding the stream's connection
        mark = sc.mark()
        os.kill(api, signal.SIGKILL)
        sc.wait_for_log(r"api@\d+#\d+: STARTING -> RUNNING", after=mark)
        with pytest.raises(grpc.RpcError):
            first.next()  # its connection died with the API process
        # The dead API's subscription still holds the topic in the worker
        # until its lease runs out; a new one must not have to wait for that.
        second = Stream(stub, "held")
        try:
            assert second.next().HasField("initial_response")
            publish(stub, "held", b"after the crash")
            event = second.next().event_message
            assert event.data == b"after the crash"
            second.answer(event.id, SUCCESS)
        finally:
            first.close()
            second.close()
