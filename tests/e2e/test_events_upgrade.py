"""Pub/sub and configuration across hot upgrades, on Redis, with the real
`layotto` command: an app with a real AppCallback server receives every
message published during upgrades; subscription streams are ended with
UNAVAILABLE and a re-subscription gets current values."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from tests.app_server import RETRY, SUCCESS, App
from tests.e2e.test_upgrade import LISTENERS, RUNTIME
from tests.integration.test_configuration_api import Subscriber, save
from tests.integration.test_pubsub_api import Stream
from tests.redis_server import RedisServer
from tests.sidecar import Sidecar, running_sidecar

pytestmark = pytest.mark.redis

PUBSUB = "pub_subs_demo"


def events_config(
    app_port: int, timing: str = ", processingTimeout: 2s, redeliverInterval: 0.5s"
) -> str:
    redis = "redisHost: '${REDIS_ADDR}'"
    return (
        LISTENERS
        + RUNTIME
        + f"app: {{app_id: app1, grpc_callback_port: {app_port}}}\n"
        + f"pub_subs: {{{PUBSUB}: {{type: redis, workers: 2, metadata: {{{redis}{timing}}}}}}}\n"
        + f"config_store: {{config_demo: {{type: redis, metadata: {{{redis}}}}}}}\n"
    )


@pytest.fixture
def app() -> Iterator[App]:
    server = App(PUBSUB, ["upgrade"]).start()
    yield server
    server.stop()


@pytest.fixture
def sidecar(tmp_path: Path, app: App, redis_server: RedisServer) -> Iterator[Sidecar]:
    config = tmp_path / "events.yaml"
    config.write_text(events_config(app.port))
    with running_sidecar(config, {"REDIS_ADDR": redis_server.address}) as running:
        yield running


class Publisher:
    """Publishes numbered messages until stopped; counts failed calls."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.sent: list[bytes] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.sidecar.stub() as stub:
            n = 0
            while not self._stop.is_set():
                data = f"msg-{n}".encode()
                try:
                    stub.PublishEvent(
                        pb.PublishEventRequest(pubsub_name=PUBSUB, topic="upgrade", data=data),
                        timeout=10,
                    )
                    self.sent.append(data)
                except grpc.RpcError as error:
                    self.failures.append(f"{error.code()}: {error.details()}")
                n += 1
                self._stop.wait(0.005)  # a steady trickle, not a flood

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_app_receives_every_message_across_upgrades(sidecar: Sidecar, app: App) -> None:
    with Publisher(sidecar) as publisher:
        app.wait_until(lambda a: len(a.events) >= 20)
        for generation in (2, 3):
            result = sidecar.cli("reload", timeout=120)
            assert result.returncode == 0, result.stderr
            assert f"generation {generation} serving" in result.stdout
            before = len(app.events)
            app.wait_until(lambda a: len(a.events) >= before + 20)  # noqa: B023
    assert publisher.failures == []
    sent = set(publisher.sent)
    assert len(sent) > 100
    app.wait_until(lambda a: sent <= set(a.data("upgrade")), timeout=30)


def test_streams_end_with_unavailable_and_resubscribe_gets_current_values(
    sidecar: Sidecar,
) -> None:
    with sidecar.stub() as stub:
        save(stub, "upgrade", k="v1")
        sub = Subscriber(stub, "upgrade", "k")
        assert sub.next() == {"k": "v1"}
        result = sidecar.cli("reload", timeout=120)
        assert result.returncode == 0, result.stderr
        with pytest.raises(grpc.RpcError) as ended:
            while True:
                sub.next(timeout=30)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "restarting" in (ended.value.details() or "")
        again = Subscriber(stub, "upgrade", "k")
        try:
            assert again.next() == {"k": "v1"}
            save(stub, "upgrade", k="v2")
            assert again.next() == {"k": "v2"}
        finally:
            again.close()


def test_unacknowledged_message_survives_a_sidecar_restart(
    tmp_path: Path, app: App, redis_server: RedisServer
) -> None:
    config = tmp_path / "events.yaml"
    config.write_text(events_config(app.port))
    env = {"REDIS_ADDR": redis_server.address}
    app.decide = lambda event: RETRY  # never acknowledged while the first sidecar runs
    with running_sidecar(config, env) as first, first.stub() as stub:
        stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name=PUBSUB, topic="upgrade", data=b"keep me"),
            timeout=10,
        )
        app.wait_until(lambda a: b"keep me" in a.data("upgrade"))
    delivered = len(app.data("upgrade"))
    app.decide = lambda event: SUCCESS
    with running_sidecar(config, env):
        app.wait_until(lambda a: len(a.data("upgrade")) > delivered)
    assert set(app.data("upgrade")) == {b"keep me"}


def test_unacknowledged_stream_event_comes_back_at_once_after_an_upgrade(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = tmp_path / "events.yaml"
    # Default processingTimeout (60 s): longer than this test waits, so the
    # event must be released by the old generation, not merely reclaimed.
    config.write_text(events_config(0, timing=""))
    with running_sidecar(config, {"REDIS_ADDR": redis_server.address}) as sc, sc.stub() as stub:
        first = Stream(stub, "handover")
        assert first.next().HasField("initial_response")
        stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name=PUBSUB, topic="handover", data=b"unanswered"),
            timeout=10,
        )
        event = first.next().event_message
        result = sc.cli("reload", timeout=120)
        assert result.returncode == 0, result.stderr
        with pytest.raises(grpc.RpcError) as ended:
            while True:
                first.next(timeout=30)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        second = Stream(stub, "handover")
        try:
            assert second.next().HasField("initial_response")
            again = second.next(timeout=20).event_message
            assert (again.id, again.data) == (event.id, b"unanswered")
            second.answer(again.id, SUCCESS)
        finally:
            first.close()
            second.close()


def test_subscriptions_move_when_their_worker_is_scaled_away(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = tmp_path / "events.yaml"
    # Default processingTimeout (60 s): a message stuck on the retired worker
    # would not come back within this test's waits.
    text = events_config(0, timing="").replace(
        "config_demo: {type: redis,", "config_demo: {type: redis, workers: 2,"
    )
    config.write_text(text)
    # One topic per replica (streams are routed by crc32(topic)), so whichever
    # replica is retired holds one of them.
    topics = [
        next(t for n in range(100) if zlib.crc32((t := f"scaled-{n}").encode()) % 2 == r)
        for r in (0, 1)
    ]
    with running_sidecar(config, {"REDIS_ADDR": redis_server.address}) as sc, sc.stub() as stub:
        save(stub, "scaled", k="before")
        sub = Subscriber(stub, "scaled", "k")
        streams = [Stream(stub, topic) for topic in topics]
        try:
            assert sub.next() == {"k": "before"}
            for stream in streams:
                assert stream.next().HasField("initial_response")
            for component in ("config_demo", PUBSUB):
                result = sc.cli("scale", component, "1", timeout=120)
                assert result.returncode == 0, result.stderr
            save(stub, "scaled", k="after")
            sub.until({"k": "after"})
            for stream, topic in zip(streams, topics, strict=True):
                stub.PublishEvent(
                    pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=b"after"),
                    timeout=10,
                )
                event = stream.next(timeout=20).event_message
                assert event.data == b"after"
                stream.answer(event.id, SUCCESS)
        finally:
            sub.close()
            for stream in streams:
                stream.close()
