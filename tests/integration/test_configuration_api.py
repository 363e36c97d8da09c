"""The configuration API through the real sidecar, on both shipped configs:
Get/Save/Delete and SubscribeConfiguration streams (Dapr's configuration
conformance cases, plus independence of streams and a second sidecar)."""

from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import threading
from pathlib import Path

import grpc
import pytest

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.redis_server import RedisServer
from tests.sidecar import REPO, Sidecar, running_sidecar

STORE = "config_demo"
_groups = itertools.count()

Stub = runtime_pb2_grpc.RuntimeStub


def fresh_group() -> str:
    """Tests share one sidecar per module: each uses its own group."""
    return f"g{os.getpid()}-{next(_groups)}"


def save(stub: Stub, group: str, **items: str) -> None:
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


def get(stub: Stub, group: str, *keys: str) -> dict[str, str]:
    answer = stub.GetConfiguration(
        pb.GetConfigurationRequest(store_name=STORE, app_id="app1", group=group, keys=keys),
        timeout=10,
    )
    return {item.key: item.content for item in answer.items}


class Subscriber:
    def __init__(self, stub: Stub, group: str, *keys: str) -> None:
        self.requests: queue.Queue[pb.SubscribeConfigurationRequest | None] = queue.Queue()
        self.updates: queue.Queue[dict[str, str] | grpc.RpcError] = queue.Queue()
        self.requests.put(
            pb.SubscribeConfigurationRequest(
                store_name=STORE, app_id="app1", group=group, keys=keys
            )
        )
        self.call = stub.SubscribeConfiguration(iter(self.requests.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.updates.put({item.key: item.content for item in response.items})
        except grpc.RpcError as error:
            self.updates.put(error)

    def next(self, timeout: float = 10) -> dict[str, str]:
        item = self.updates.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def until(self, expected: dict[str, str], timeout: float = 15) -> None:
        """Merge updates until the subscriber's view equals ``expected``."""
        seen: dict[str, str] = {}
        while seen != expected:
            seen.update(self.next(timeout))
            seen = {k: v for k, v in seen.items() if v != "" or k in expected}

    def close(self) -> None:
        self.call.cancel()
        self.requests.put(None)


def test_save_get_and_delete(stub: Stub) -> None:
    group = fresh_group()
    save(stub, group, a="1", b="2", c="3")
    assert get(stub, group, "a", "b") == {"a": "1", "b": "2"}
    assert get(stub, group) == {"a": "1", "b": "2", "c": "3"}  # no keys: all
    assert get(stub, group, "missing") == {}
    save(stub, group, a="1b")
    assert get(stub, group, "a") == {"a": "1b"}
    stub.DeleteConfiguration(
        pb.DeleteConfigurationRequest(
            store_name=STORE, app_id="app1", group=group, keys=["a", "x"]
        ),
        timeout=10,
    )
    assert get(stub, group) == {"b": "2", "c": "3"}


def test_items_keep_tags_and_blank_group_means_default(stub: Stub) -> None:
    key = f"k{fresh_group()}"
    save(stub, "", **{key: "x"})
    answer = stub.GetConfiguration(
        pb.GetConfigurationRequest(store_name=STORE, app_id="app1", group="default", keys=[key]),
        timeout=10,
    )
    (item,) = answer.items
    assert (item.content, item.group, item.label, dict(item.tags)) == (
        "x",
        "default",
        "default",
        {"v": "x"},
    )


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (
            lambda s: s.GetConfiguration(pb.GetConfigurationRequest(store_name="nope")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "configuration store nope not found",
        ),
        (
            lambda s: s.DeleteConfiguration(
                pb.DeleteConfigurationRequest(store_name=STORE, app_id="app1")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"keys is empty in configuration store {STORE}",
        ),
        (
            lambda s: s.SaveConfiguration(
                pb.SaveConfigurationRequest(store_name=STORE, items=[pb.ConfigurationItem()])
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"key is empty in configuration store {STORE}",
        ),
    ],
)
def test_bad_requests(stub: Stub, call: object, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        call(stub)  # type: ignore[operator]
    assert (caught.value.code(), caught.value.details()) == (code, message)


def test_subscribe_sends_current_values_then_changes_and_deletes(stub: Stub) -> None:
    group = fresh_group()
    save(stub, group, a="1", b="2")
    sub = Subscriber(stub, group, "a")
    try:
        assert sub.next() == {"a": "1"}
        save(stub, group, b="ignored", a="2")
        assert sub.next() == {"a": "2"}
        stub.DeleteConfiguration(
            pb.DeleteConfigurationRequest(store_name=STORE, app_id="app1", group=group, keys=["a"]),
            timeout=10,
        )
        assert sub.next() == {"a": ""}  # a deleted key comes with empty content
    finally:
        sub.close()


def test_subscribe_to_all_keys_sees_new_keys(stub: Stub) -> None:
    group = fresh_group()
    sub = Subscriber(stub, group)
    try:
        save(stub, group, new="n")
        sub.until({"new": "n"})
    finally:
        sub.close()


def test_closing_one_stream_leaves_the_other(stub: Stub) -> None:
    group = fresh_group()
    save(stub, group, k="0")
    first, second = Subscriber(stub, group, "k"), Subscriber(stub, group, "k")
    try:
        assert first.next() == {"k": "0"} and second.next() == {"k": "0"}
        first.close()
        save(stub, group, k="1")
        assert second.next() == {"k": "1"}
    finally:
        first.close()
        second.close()


def config_worker_pid(sidecar: Sidecar) -> int:
    for line in sidecar.cli("status").stdout.splitlines():
        cells = line.split()
        if cells and cells[0].startswith(STORE + "#"):
            return int(cells[2])
    raise AssertionError("no configuration worker in status")


def test_subscription_survives_a_worker_crash(sidecar: Sidecar, stub: Stub) -> None:
    group = fresh_group()
    save(stub, group, k="before")
    sub = Subscriber(stub, group, "k")
    try:
        assert sub.next() == {"k": "before"}
        mark = sidecar.mark()
        os.kill(config_worker_pid(sidecar), signal.SIGKILL)
        sidecar.wait_for_log(rf"{STORE}#\d+: STARTING -> RUNNING", after=mark)
        if "redis" in sidecar.config:
            save(stub, group, k="after")
            sub.until({"k": "after"})
        else:  # in memory the data died with the worker: the key is gone
            sub.until({})
            save(stub, group, k="after")
            sub.until({"k": "after"})
    finally:
        sub.close()


@pytest.mark.redis
def test_a_change_through_another_sidecar_reaches_subscribers(redis_server: RedisServer) -> None:
    env = {"REDIS_ADDR": redis_server.address, "LAYOTTO_APP_PORT": "0"}
    config = REPO / "configs" / "redis.yaml"
    with running_sidecar(config, env) as a, running_sidecar(config, env) as b:
        group = fresh_group()
        with a.stub() as stub_a, b.stub() as stub_b:
            sub = Subscriber(stub_a, group, "shared")
            try:
                save(stub_b, group, shared="from b")
                sub.until({"shared": "from b"})
            finally:
                sub.close()


def test_stream_for_an_unknown_store_fails(stub: Stub) -> None:
    requests = iter([pb.SubscribeConfigurationRequest(store_name="nope")])
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.SubscribeConfiguration(requests, timeout=10))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_stream_outlives_the_connection_age(tmp_path: Path) -> None:
    config = tmp_path / "short-age.yaml"
    config.write_text(
        json.dumps(
            {
                "app": {"app_id": "app1", "grpc_callback_port": 0},
                "listeners": {
                    "grpc": "127.0.0.1:${LAYOTTO_GRPC_PORT}",
                    "http": "127.0.0.1:${LAYOTTO_HTTP_PORT}",
                },
                "runtime": {"max_connection_age": 0.5, "shutdown_grace": 0.5},
                "config_store": {STORE: {"type": "in-memory"}},
            }
        )
    )
    with running_sidecar(config) as sidecar, sidecar.stub() as stub:
        group = fresh_group()
        save(stub, group, k="0")
        sub = Subscriber(stub, group, "k")
        try:
            assert sub.next() == {"k": "0"}
            for n in range(1, 4):
                # The duration under test: each round outlasts the connection's
                # age plus its grace, after which gRPC used to cut the stream.
                threading.Event().wait(1.2)
                save(stub, group, k=str(n))
                assert sub.next() == {"k": str(n)}
        finally:
            sub.close()


def test_each_request_on_a_stream_adds_a_subscription(stub: Stub) -> None:
    group = fresh_group()
    save(stub, group, a="1", b="2")
    sub = Subscriber(stub, group, "a")
    try:
        assert sub.next() == {"a": "1"}
        sub.requests.put(
            pb.SubscribeConfigurationRequest(
                store_name=STORE, app_id="app1", group=group, keys=["b"]
            )
        )
        assert sub.next() == {"b": "2"}
        save(stub, group, a="1b", b="2b")
        sub.until({"a": "1b", "b": "2b"})
    finally:
        sub.close()
