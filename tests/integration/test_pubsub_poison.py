"""No poison event, through the real sidecar on both backends: publish refuses
what no default gRPC subscriber could receive (naming the limit), the
largest event it accepts reaches default-limit subscribers, and an event that
fails every delivery (to the app or to a stream) goes to its dead-letter
topic and lets the next one through."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto.proto import appcallback_pb2 as cb
from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.app_server import RETRY, SUCCESS, App
from tests.integration.test_pubsub_api import PUBSUB, Stream
from tests.sidecar import running_sidecar

MiB = 1024 * 1024
GRPC_DEFAULT_LIMIT = 4 * MiB  # what a subscriber receives at most unless it says otherwise
ISSUE_SIZE = 4 * MiB - 100  # accepted before, and then never deliverable
ATTEMPTS = 3


def write_config(
    path: Path,
    backend: str,
    app_port: int,
    redis_addr: str = "",
    runtime: dict[str, Any] | None = None,
    **metadata: str,
) -> Path:
    metadata = {"maxDeliveryAttempts": str(ATTEMPTS), **metadata}
    if backend == "redis":
        metadata["redisHost"] = redis_addr
    config = {
        "app": {"app_id": "app1", "grpc_callback_port": app_port},
        "listeners": {
            "grpc": "127.0.0.1:${LAYOTTO_GRPC_PORT}",
            "http": "127.0.0.1:${LAYOTTO_HTTP_PORT}",
        },
        "runtime": runtime or {},
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
    server = App(PUBSUB, ["big", "poison", "poison-deadletter"]).start()  # default limits
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stub(
    backend: str, app: App, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[runtime_pb2_grpc.RuntimeStub]:
    addr = request.getfixturevalue("redis_server").address if backend == "redis" else ""
    config = write_config(tmp_path_factory.mktemp("cfg") / "poison.yaml", backend, app.port, addr)
    with running_sidecar(config) as sidecar, sidecar.stub() as stub:
        app.wait_until(lambda a: a.listed > 0)
        yield stub


@pytest.fixture(autouse=True)
def fresh_app_policy(app: App) -> Iterator[None]:
    app.decide = lambda event: SUCCESS
    yield
    app.decide = lambda event: SUCCESS


def publish(stub: runtime_pb2_grpc.RuntimeStub, topic: str, data: bytes) -> None:
    request = pb.PublishEventRequest(
        pubsub_name=PUBSUB, topic=topic, data=data, data_content_type="text/plain"
    )
    stub.PublishEvent(request, timeout=30)


def refusal(stub: runtime_pb2_grpc.RuntimeStub, topic: str, size: int) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        publish(stub, topic, b"x" * size)
    return caught.value


def largest_accepted(stub: runtime_pb2_grpc.RuntimeStub, topic: str, limit: int) -> int:
    """The data size that makes the event exactly as large as accepted: the
    refusal of a larger one says by how many bytes it is over."""
    details = refusal(stub, topic, limit - 100).details() or ""
    excess = re.search(r": ([0-9]+) bytes too many", details)
    assert excess is not None, details
    return limit - 100 - int(excess[1])


def test_an_event_too_large_to_deliver_is_refused_naming_the_limit(
    stub: runtime_pb2_grpc.RuntimeStub,
) -> None:
    error = refusal(stub, "big", ISSUE_SIZE)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert "event too large" in details
    assert f"over the limit of {GRPC_DEFAULT_LIMIT} bytes (runtime.max_event_size)" in details


def test_the_largest_accepted_event_reaches_default_limit_subscribers(
    stub: runtime_pb2_grpc.RuntimeStub, app: App
) -> None:
    size = largest_accepted(stub, "big", GRPC_DEFAULT_LIMIT)
    assert GRPC_DEFAULT_LIMIT - 2048 < size < GRPC_DEFAULT_LIMIT
    data = b"b" * size
    publish(stub, "big", data)
    app.wait_until(lambda a: data in a.data("big"), timeout=30)
    # One byte more is refused: the limit is exact.
    assert refusal(stub, "big", size + 1).code() == grpc.StatusCode.INVALID_ARGUMENT
    # And over a stream, on a channel with gRPC's default limits.
    stream = Stream(stub, "big-stream")
    try:
        assert stream.next().HasField("initial_response")
        size = largest_accepted(stub, "big-stream", GRPC_DEFAULT_LIMIT)
        publish(stub, "big-stream", b"s" * size)
        event = stream.next(timeout=30).event_message
        assert event.data == b"s" * size
        stream.answer(event.id, SUCCESS)
    finally:
        stream.close()


def test_an_event_the_app_always_refuses_goes_to_the_dead_letter_topic(
    stub: runtime_pb2_grpc.RuntimeStub, app: App
) -> None:
    def decide(event: cb.TopicEventRequest) -> int:
        return RETRY if event.data == b"poison" else SUCCESS

    app.decide = decide
    publish(stub, "poison", b"poison")
    publish(stub, "poison", b"next")
    app.wait_until(lambda a: b"next" in a.data("poison"))
    assert app.data("poison") == [b"poison"] * ATTEMPTS + [b"next"]
    app.wait_until(lambda a: b"poison" in a.data("poison-deadletter"))
    [dead] = [e for e in app.events if e.topic == "poison-deadletter"]
    first = next(e for e in app.events if e.topic == "poison")
    assert dead.id == first.id  # the same event, with where it failed and why
    assert dict(dead.metadata) == {
        "originaltopic": "poison",
        "deliveryattempts": str(ATTEMPTS),
        "lasterror": "the app answered RETRY",
    }


def test_an_event_a_stream_always_refuses_goes_to_the_dead_letter_topic(
    stub: runtime_pb2_grpc.RuntimeStub,
) -> None:
    """With the largest data accepted: its dead-letter delivery still fits a
    default-limit subscriber."""
    refusing, dead_letters = Stream(stub, "refused"), Stream(stub, "refused-deadletter")
    try:
        assert refusing.next().HasField("initial_response")
        assert dead_letters.next().HasField("initial_response")
        data = b"p" * largest_accepted(stub, "refused", GRPC_DEFAULT_LIMIT)
        publish(stub, "refused", data)
        publish(stub, "refused", b"next")
        for _ in range(ATTEMPTS):
            event = refusing.next(timeout=30).event_message
            assert event.data == data
            refusing.answer(event.id, RETRY)
        after = refusing.next(timeout=30).event_message
        assert after.data == b"next"
        refusing.answer(after.id, SUCCESS)
        dead = dead_letters.next(timeout=30).event_message
        assert dead.data == data
        assert dead.metadata["deliveryattempts"] == str(ATTEMPTS)
        assert dead.metadata["lasterror"] == "the subscriber answered RETRY"
        dead_letters.answer(dead.id, SUCCESS)
    finally:
        refusing.close()
        dead_letters.close()


def test_message_size_limits_are_configurable(tmp_path: Path) -> None:
    """The limits belong to the API process and the worker, not the backend:
    one in-memory sidecar with defaults, one with raised limits."""
    default = write_config(tmp_path / "default.yaml", "in-memory", 0)
    with running_sidecar(default) as sidecar, sidecar.stub() as stub:
        # gRPC's default receive limit
        assert refusal(stub, "big", 5 * MiB).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    runtime = {"max_receive_message_size": "8MiB", "max_event_size": "6MiB"}
    # Without a dead-letter topic the largest event is limited by its own delivery.
    config = write_config(
        tmp_path / "limits.yaml", "in-memory", 0, runtime=runtime, deadLetterTopic=""
    )
    with running_sidecar(config) as sidecar, sidecar.stub() as big_stub:
        error = refusal(big_stub, "t", 7 * MiB)  # received, then refused as undeliverable
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"over the limit of {6 * MiB} bytes (runtime.max_event_size)" in (
            error.details() or ""
        )
        options = [("grpc.max_receive_message_length", 6 * MiB)]
        with grpc.insecure_channel(sidecar.target, options=options) as channel:
            stream = Stream(runtime_pb2_grpc.RuntimeStub(channel), "t")
            try:
                assert stream.next().HasField("initial_response")
                size = largest_accepted(big_stub, "t", 6 * MiB)
                publish(big_stub, "t", b"x" * size)
                response = stream.next(timeout=30)
                assert response.event_message.data == b"x" * size
                # Exactly the limit, received under a receive limit of the same size.
                assert response.ByteSize() == 6 * MiB
                stream.answer(response.event_message.id, SUCCESS)
            finally:
                stream.close()
