"""The threads of the subscription streams: started on demand, ended when idle.

A sync grpcio server runs a streaming call on one pool thread for the
stream's whole life. ThreadPoolExecutor never ends a thread, so a storm of
streams left the API process with hundreds of idle threads (and their
memory) for good, and when the streams shared the unary calls' pool they took
every thread unary calls needed. The streams therefore run on a pool of their
own (grpcio's per-method ``experimental_thread_pool``, api/server.py) whose
threads end after ``idle_timeout`` without work.

It subclasses ThreadPoolExecutor only because grpcio accepts nothing else
there; none of the parent's machinery is used.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class ElasticThreadPool(ThreadPoolExecutor):
    """At most ``max_workers`` threads, started when work waits for one;
    each ends after ``idle_timeout`` seconds without work. Work beyond
    ``max_workers`` waits in order."""

    def __init__(self, max_workers: int, thread_name_prefix: str, idle_timeout: float) -> None:
        super().__init__(max_workers=1)  # starts nothing: submit() below is the pool
        self._limit = max_workers
        self._prefix = thread_name_prefix
        self._idle_timeout = idle_timeout
        self._changed = threading.Condition()
        self._work: collections.deque[_Work] = collections.deque()
        self._running: set[threading.Thread] = set()
        self._idle = 0
        self._closed = False
        self._names = itertools.count()

    def threads(self) -> int:
        with self._changed:
            return len(self._running)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.append((future, fn, args, kwargs))
            if self._idle >= len(self._work):
                self._changed.notify()
            elif len(self._running) < self._limit:
                thread = threading.Thread(
                    target=self._serve, name=f"{self._prefix}_{next(self._names)}", daemon=True
                )
                self._running.add(thread)
                thread.start()
        return future

    def _next(self) -> _Work | None:
        """The next work, or None when this thread should end (idle, or shut down)."""
        with self._changed:
            deadline = time.monotonic() + self._idle_timeout
            self._idle += 1
            try:
                while not self._work and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
            finally:
                self._idle -= 1
            if self._work:
                return self._work.popleft()
            self._running.discard(threading.current_thread())
            return None

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._changed:
            self._closed = True
            if cancel_futures:
                while self._work:
                    self._work.popleft()[0].cancel()
            self._changed.notify_all()
            threads = list(self._running)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
        super().shutdown(wait=False)

    def _serve(self) -> None:
        while (work := self._next()) is not None:
            _run(*work)
            del work  # nothing of a call outlives it while the thread waits


def _run(
    future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if future.set_running_or_notify_cancel():
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
