"""Entry point of a component worker process: one component, one request at a time."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from layotto.boundary import child, nng_exchange
from layotto.boundary.control_link import ControlLink
from layotto.boundary.exits import EXIT_CONFIG
from layotto.boundary.frames import (
    ProtocolError,
    Request,
    decode_batch,
    decode_request,
    encode_batch,
    encode_reply,
    is_batch,
)
from layotto.boundary.nng_replier import ReplySocket, SocketClosedError
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import Code, code_of
from layotto.components.errors import ComponentError
from layotto.workers.block import Block
from layotto.workers.serving import Serving, watch_health

log = logging.getLogger("layotto.worker")


def _reply(request_id: int, answer: bytes | Exception, method: str) -> bytes:
    if not isinstance(answer, Exception):
        return encode_reply(Code.OK, request_id, answer)
    code = code_of(answer)
    if code == Code.INTERNAL and not isinstance(answer, ComponentError):
        log.error("%s failed", method, exc_info=answer)
    return encode_reply(code, request_id, str(answer).encode())


def _late(request_id: int) -> bytes:
    # The caller has already given up: doing the work now could only
    # surprise it (a lock it thinks it did not get, an id it never saw).
    return encode_reply(
        Code.DEADLINE_EXCEEDED, request_id, b"deadline passed before the worker began"
    )


def serve_one(block: Block, frame: bytes) -> bytes:
    """Run one request frame through the block; always returns a reply frame."""
    try:
        request = decode_request(frame)
    except ProtocolError as exc:
        return encode_reply(Code.INTERNAL, 0, str(exc).encode())
    if time.monotonic() >= request.deadline:
        return _late(request.request_id)
    try:
        answer: bytes | Exception = block.handle(request.method, request.payload)
    except Exception as exc:
        answer = exc
    return _reply(request.request_id, answer, request.method)


def serve_batch(block: Block, frames: list[bytes]) -> list[bytes]:
    """Several request frames, answered in order; the block may serve some
    of them together (see Block.handle_many)."""
    replies: list[bytes | None] = []
    runnable: list[tuple[int, Request]] = []
    now = time.monotonic()
    for index, frame in enumerate(frames):
        try:
            request = decode_request(frame)
        except ProtocolError as exc:
            replies.append(encode_reply(Code.INTERNAL, 0, str(exc).encode()))
            continue
        if now >= request.deadline:
            replies.append(_late(request.request_id))
            continue
        replies.append(None)
        runnable.append((index, request))
    answers = block.handle_many([(r.method, r.payload) for _, r in runnable])
    for (index, request), answer in zip(runnable, answers, strict=True):
        replies[index] = _reply(request.request_id, answer, request.method)
    return [reply for reply in replies if reply is not None]


def serve_frame(block: Block, frame: bytes) -> bytes:
    """A single request frame, or a batch of them answered in order."""
    if not is_batch(frame):
        return serve_one(block, frame)
    try:
        frames = decode_batch(frame)
    except ProtocolError as exc:
        return encode_reply(Code.INTERNAL, 0, str(exc).encode())
    return encode_batch(serve_batch(block, frames))


def serve_forever(serving: Serving, sock: ReplySocket) -> None:
    """Answer requests one at a time until the socket is closed."""
    try:
        while True:
            sock.reply(serving.serve(sock.receive()))
    except SocketClosedError:
        return


def run(spec: WorkerSpec, link: ControlLink) -> int:
    nng_exchange.limit_threads()  # before the first nng socket
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    link.start_reader(lambda _msg: None, child.exit_when_supervisor_gone)
    fatal: list[str] = []

    def broken(reason: str) -> None:
        fatal.append(reason)
        stop.set()

    try:
        serving = Serving(spec, serve_frame)
    except ComponentError as exc:
        broken(str(exc))
    if fatal:
        log.error("component %s cannot start: %s", spec.name, fatal[0])
        link.send({"event": "fatal", "reason": fatal[0]})
        return EXIT_CONFIG
    sock = ReplySocket(spec.address)
    threading.Thread(
        target=watch_health, args=(serving, link, stop, broken), name="health", daemon=True
    ).start()
    server = threading.Thread(target=serve_forever, args=(serving, sock), name="serve", daemon=True)
    server.start()
    link.send({"event": "ready", "pid": os.getpid()})
    log.info("serving %s %s (%s) at %s", spec.kind, spec.name, spec.type, spec.address)
    # The main thread only waits: signal handlers run here, never while a
    # thread sits inside nng's C code.
    while not stop.wait(1.0) and server.is_alive():
        pass
    sock.close()  # ends the blocked receive
    server.join(timeout=10)
    serving.close()
    if fatal:
        log.error("component %s cannot start: %s", spec.name, fatal[0])
        link.send({"event": "fatal", "reason": fatal[0]})
        return EXIT_CONFIG
    log.info("stopped")
    return 0


def main() -> None:
    child.run_exec(run)


if __name__ == "__main__":
    main()
