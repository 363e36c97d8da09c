"""In-process baseline: the sidecar's libraries in ONE process, no nng, no workers.

A sync grpcio server (ThreadPoolExecutor of 32 threads, as the API process)
serving Runtime.GetState / SaveState with redis-py called directly from the
handler thread. Keys are hashes {data, version} like the sidecar's Redis store
(HMGET to read; HSET + HINCRBY in one non-transactional pipeline to write, so
each request is one Redis round trip, as the sidecar's EVALSHA is).

    python bench/_baseline_server.py GRPC_PORT REDIS_HOST:REDIS_PORT

Prints "ready" on stdout once serving; exits on SIGTERM or when stdin closes
(the bench died), so it never outlives the benchmark.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import redis
from google.protobuf import empty_pb2

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc

THREADS = 32  # layotto.api.main.GRPC_THREADS


class Baseline(runtime_pb2_grpc.RuntimeServicer):
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def GetState(
        self, request: pb.GetStateRequest, context: grpc.ServicerContext
    ) -> pb.GetStateResponse:
        data, version = self._redis.hmget(request.key, ("data", "version"))
        if data is None:
            return pb.GetStateResponse()
        return pb.GetStateResponse(data=data, etag=version.decode() if version else "")

    def SaveState(
        self, request: pb.SaveStateRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        pipe = self._redis.pipeline(transaction=False)
        for item in request.states:
            pipe.hset(item.key, "data", item.value)
            pipe.hincrby(item.key, "version", 1)
        pipe.execute()
        return empty_pb2.Empty()


def main() -> None:
    port = int(sys.argv[1])
    host, _, redis_port = sys.argv[2].rpartition(":")
    client = redis.Redis(host=host, port=int(redis_port), decode_responses=False)
    client.ping()
    server = grpc.server(ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="grpc"))
    runtime_pb2_grpc.add_RuntimeServicer_to_server(Baseline(client), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the bench is gone
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    print("ready", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()
    client.close()


if __name__ == "__main__":
    main()
