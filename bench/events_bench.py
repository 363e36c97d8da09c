"""Pub/sub and configuration events through the sidecar on Redis, side by side
with redis-py doing the same directly, in one run (ratios, not absolutes).

    .venv/bin/python bench/events_bench.py [--messages 2000] [--latency 300]

Measures, each for the sidecar and for Redis directly:
- publish throughput (4 publishing threads; PublishEvent vs XADD);
- delivery rate (one topic, every message delivered and acknowledged one at
  a time: OnTopicEvent to an AppCallback server vs XREADGROUP + XACK), with
  1 and 4 pub/sub workers (``layotto scale`` in between);
- publish → delivery latency p50/p99 (one message at a time);
- configuration change → subscriber notification latency p50/p99
  (SaveConfiguration → SubscribeConfiguration vs HSET + PUBLISH → SUBSCRIBE).
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import redis
from _services import LAYOTTO, Processes, RedisServer, Sidecar, free_port

from layotto.proto import appcallback_pb2 as cb
from layotto.proto import appcallback_pb2_grpc, runtime_pb2_grpc
from layotto.proto import runtime_pb2 as pb

PUBSUB, STORE = "pub_subs_demo", "config_demo"
PAYLOAD = b"x" * 100


class App(appcallback_pb2_grpc.AppCallbackServicer):
    """Subscribes to every topic in ``topics``; calls ``on_event`` per delivery."""

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics
        self.on_event: Callable[[cb.TopicEventRequest], None] = lambda event: None
        self.port = free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        appcallback_pb2_grpc.add_AppCallbackServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def ListTopicSubscriptions(self, request: Any, context: Any) -> Any:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name=PUBSUB, topic=t) for t in self.topics]
        )

    def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> Any:
        self.on_event(request)
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)

    def stop(self) -> None:
        self.server.stop(0)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def run_threads(count: int, work: Callable[[int], None]) -> float:
    """Seconds for ``count`` threads to run ``work(thread_index)``."""
    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


class Counter:
    """Counts events; ``wait(n)`` blocks until n arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def add(self, *_: object) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait(self, n: int, timeout: float = 120) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.count >= n, timeout):
                raise RuntimeError(f"only {self.count} of {n} events arrived")


def sidecar_publish_and_deliver(
    stub: Any, app: App, topic: str, messages: int, app_seconds: float = 0.0
) -> dict[str, float]:
    counter = Counter()

    def on_event(event: cb.TopicEventRequest) -> None:
        if app_seconds:
            time.sleep(app_seconds)  # the app's own work per event
        counter.add()

    app.on_event = on_event
    per_thread = messages // 4

    def publish(_: int) -> None:
        for _n in range(per_thread):
            stub.PublishEvent(
                pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=PAYLOAD), timeout=30
            )

    began = time.perf_counter()
    seconds = run_threads(4, publish)
    counter.wait(per_thread * 4)
    delivered = time.perf_counter() - began
    return {"publish_per_s": per_thread * 4 / seconds, "deliver_per_s": per_thread * 4 / delivered}


def sidecar_publish_only(stub: Any, topic: str, messages: int) -> float:
    """PublishEvent/s to a topic nobody consumes (4 threads)."""
    per_thread = messages // 4

    def publish(_: int) -> None:
        for _n in range(per_thread):
            stub.PublishEvent(
                pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=PAYLOAD), timeout=30
            )

    return per_thread * 4 / run_threads(4, publish)


def direct_publish_only(client: redis.Redis, topic: str, messages: int) -> float:
    per_thread = messages // 4

    def publish(_: int) -> None:
        for _n in range(per_thread):
            client.xadd(f"direct|||{topic}", {"data": PAYLOAD})

    return per_thread * 4 / run_threads(4, publish)


def direct_publish_and_deliver(client: redis.Redis, topic: str, messages: int) -> dict[str, float]:
    stream, group = f"direct|||{topic}", "bench"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    per_thread = messages // 4
    counter = Counter()
    stop = threading.Event()

    def read() -> None:
        reader = redis.Redis(connection_pool=client.connection_pool)
        while not stop.is_set():
            got = reader.xreadgroup(group, "c1", {stream: ">"}, count=1, block=200)
            for _stream, entries in got or []:
                for entry_id, _fields in entries:
                    reader.xack(stream, group, entry_id)
                    counter.add()

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()

    def publish(_: int) -> None:
        for _n in range(per_thread):
            client.xadd(stream, {"data": PAYLOAD})

    began = time.perf_counter()
    seconds = run_threads(4, publish)
    counter.wait(per_thread * 4)
    delivered = time.perf_counter() - began
    stop.set()
    reader_thread.join()
    return {"publish_per_s": per_thread * 4 / seconds, "deliver_per_s": per_thread * 4 / delivered}


def sidecar_latency(stub: Any, app: App, topic: str, samples: int) -> dict[str, float]:
    arrived = threading.Event()
    app.on_event = lambda event: arrived.set()
    latencies = []
    for _ in range(samples):
        arrived.clear()
        began = time.perf_counter()
        stub.PublishEvent(
            pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=PAYLOAD), timeout=30
        )
        if not arrived.wait(30):
            raise RuntimeError("an event did not arrive")
        latencies.append(time.perf_counter() - began)
    return percentiles(latencies)


def direct_latency(client: redis.Redis, samples: int) -> dict[str, float]:
    stream, group = "direct|||latency", "bench"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    arrived = threading.Event()
    stop = threading.Event()

    def read() -> None:
        reader = redis.Redis(connection_pool=client.connection_pool)
        while not stop.is_set():
            for _stream, entries in (
                reader.xreadgroup(group, "c1", {stream: ">"}, count=1, block=200) or []
            ):
                for entry_id, _fields in entries:
                    reader.xack(stream, group, entry_id)
                    arrived.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    latencies = []
    for _ in range(samples):
        arrived.clear()
        began = time.perf_counter()
        client.xadd(stream, {"data": PAYLOAD})
        if not arrived.wait(30):
            raise RuntimeError("a message did not arrive")
        latencies.append(time.perf_counter() - began)
    stop.set()
    thread.join()
    return percentiles(latencies)


def sidecar_config_latency(stub: Any, samples: int) -> dict[str, float]:
    requests: queue.Queue[Any] = queue.Queue()
    requests.put(pb.SubscribeConfigurationRequest(store_name=STORE, app_id="bench", keys=["k"]))
    updates: queue.Queue[float] = queue.Queue()
    call = stub.SubscribeConfiguration(iter(requests.get, None))

    def read() -> None:
        try:
            for _response in call:
                updates.put(time.perf_counter())
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    stub.SaveConfiguration(
        pb.SaveConfigurationRequest(
            store_name=STORE, app_id="bench", items=[pb.ConfigurationItem(key="k", content="start")]
        )
    )
    updates.get(timeout=10)
    latencies = []
    for n in range(samples):
        began = time.perf_counter()
        stub.SaveConfiguration(
            pb.SaveConfigurationRequest(
                store_name=STORE,
                app_id="bench",
                items=[pb.ConfigurationItem(key="k", content=str(n))],
            )
        )
        latencies.append(updates.get(timeout=10) - began)
    call.cancel()
    requests.put(None)
    return percentiles(latencies)


def direct_config_latency(client: redis.Redis, samples: int) -> dict[str, float]:
    listener = client.pubsub()
    listener.subscribe("direct-config")
    listener.get_message(timeout=5)  # the subscribe confirmation
    latencies = []
    for n in range(samples):
        began = time.perf_counter()
        pipe = client.pipeline(transaction=True)
        pipe.hset("direct-config-hash", "k", str(n))
        pipe.publish("direct-config", "k")
        pipe.execute()
        while listener.get_message(timeout=10) is None:
            pass
        client.hget("direct-config-hash", "k")  # the subscriber re-reads the value
        latencies.append(time.perf_counter() - began)
    listener.close()
    return percentiles(latencies)


def write_config(path: Path, app_port: int) -> None:
    redis_host = "{redisHost: '${REDIS_ADDR}'}"
    path.write_text(
        f"app: {{app_id: bench, grpc_callback_port: {app_port}}}\n"
        "listeners: {grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}',"
        " http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'}\n"
        f"pub_subs: {{{PUBSUB}: {{type: redis, workers: 1, metadata: {redis_host}}}}}\n"
        f"config_store: {{{STORE}: {{type: redis, metadata: {redis_host}}}}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=int, default=300)
    parser.add_argument("--slow-messages", type=int, default=400)
    parser.add_argument("--app-ms", type=float, default=5.0, help="app work per event (scaling)")
    args = parser.parse_args()
    procs = Processes()
    topics = ["throughput", "slow-app-1", "slow-app-4", "latency"]
    app = App(topics)
    results: dict[str, Any] = {}
    try:
        redis_server = RedisServer()
        procs.add("redis", redis_server)
        config = Path(tempfile.mkdtemp(prefix="layotto-events-bench-")) / "events.yaml"
        write_config(config, app.port)
        sidecar = Sidecar(str(config), {"REDIS_ADDR": redis_server.address})
        procs.add("sidecar", sidecar)
        sidecar.start()
        client = redis.Redis(host="127.0.0.1", port=redis_server.port)
        with grpc.insecure_channel(sidecar.target) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            # warm up: the app's subscriptions are picked up, connections made
            sidecar_latency(stub, app, "latency", 20)
            results["publish_only"] = {
                "direct": direct_publish_only(client, "nobody", args.messages),
                "sidecar": sidecar_publish_only(stub, "nobody", args.messages),
            }
            results["direct"] = direct_publish_and_deliver(client, "t1", args.messages)
            results["sidecar_1_worker"] = sidecar_publish_and_deliver(
                stub, app, "throughput", args.messages
            )
            slow = args.app_ms / 1000
            results["slow_app_1_worker"] = sidecar_publish_and_deliver(
                stub, app, "slow-app-1", args.slow_messages, slow
            )
            scale = subprocess.run(
                [LAYOTTO, "scale", "-c", sidecar.config, PUBSUB, "4"],
                env=sidecar.env,
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            print(scale.stdout.strip())
            results["slow_app_4_workers"] = sidecar_publish_and_deliver(
                stub, app, "slow-app-4", args.slow_messages, slow
            )
            results["latency_direct"] = direct_latency(client, args.latency)
            results["latency_sidecar"] = sidecar_latency(stub, app, "latency", args.latency)
            results["config_direct"] = direct_config_latency(client, args.latency)
            results["config_sidecar"] = sidecar_config_latency(stub, args.latency)
    finally:
        app.stop()
        procs.stop_all()
    results["app_ms"] = args.app_ms
    report(results)


def report(r: dict[str, Any]) -> None:
    direct = r["direct"]
    print(json.dumps(r, indent=2))
    print()
    print(f"{'measure':44} {'direct':>10} {'sidecar':>10} {'ratio':>7}")
    alone = r["publish_only"]
    print(
        f"{'publish msg/s (4 threads), no subscriber':44} {alone['direct']:10.0f} "
        f"{alone['sidecar']:10.0f} {alone['sidecar'] / alone['direct']:7.2f}"
    )
    for label, key, case in (
        ("publish msg/s while delivering, 1 worker", "publish_per_s", "sidecar_1_worker"),
        ("deliver+ack msg/s, 1 worker", "deliver_per_s", "sidecar_1_worker"),
    ):
        ours = r[case][key]
        print(f"{label:44} {direct[key]:10.0f} {ours:10.0f} {ours / direct[key]:7.2f}")
    one, four = r["slow_app_1_worker"]["deliver_per_s"], r["slow_app_4_workers"]["deliver_per_s"]
    print(
        f"delivery to an app taking {r['app_ms']} ms per event: 1 worker {one:.0f}/s, "
        f"4 workers {four:.0f}/s ({four / one:.2f}x)"
    )
    for label, a, b in (
        ("publish -> delivery", "latency_direct", "latency_sidecar"),
        ("config change -> notification", "config_direct", "config_sidecar"),
    ):
        for p in ("p50_ms", "p99_ms"):
            print(f"{label + ' ' + p:44} {r[a][p]:10.2f} {r[b][p]:10.2f} {r[b][p] / r[a][p]:7.2f}")


if __name__ == "__main__":
    main()
