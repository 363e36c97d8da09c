"""Starting child processes: the supervisor's one way to touch fork/exec.

Three ways in. ``prefork_zygote`` forks generation 1's zygote from the
supervisor itself, before trio runs (nothing to inherit but memory, so the
zygote family shares the supervisor's interpreter and modules). ``launch``
execs a fresh interpreter (later zygotes, and the API process and workers
when no zygote is up): the supervisor's trio runtime is never forked.
``Zygote.fork`` asks a zygote, which has imported everything a worker needs,
to fork a worker or an API process: it then shares those pages instead of
importing them again. Each child gets one end of a socketpair as its
control link, and its spec as the first line on it.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import importlib
import os
import signal
import socket
import sys
import traceback
from typing import Any, Protocol

import trio

from layotto.boundary.control_link import CONTROL_FD_ENV, encode
from layotto.boundary.control_link_trio import send_message
from layotto.boundary.specs import ApiSpec, ChildSpec, WorkerSpec, ZygoteSpec

# How long to wait for the zygote's report of a forked worker's exit status
# after the kernel said it exited.
_STATUS_WAIT = 1.0
_PR_SET_CHILD_SUBREAPER = 36


class Handle(Protocol):
    pid: int
    control: trio.socket.SocketType

    @property
    def alive(self) -> bool: ...

    def signal(self, signum: int) -> None: ...

    async def wait(self) -> int:
        """Exit code, or minus the signal number; -1 when unknown."""
        ...


class Launched:
    """A child the supervisor exec'd itself."""

    def __init__(self, process: trio.Process, control: trio.socket.SocketType) -> None:
        self.process = process
        self.pid = int(process.pid)
        self.control = control

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            self.process.send_signal(signum)

    async def wait(self) -> int:
        await self.process.wait()
        return int(self.process.returncode if self.process.returncode is not None else -1)


async def launch(spec: ChildSpec) -> Launched:
    """Exec ``python -m <the spec's role module>``; its spec is the first line
    on its control link. Never the environment: a spec holds the config, with
    any password in it, and /proc/<pid>/environ outlives nothing."""
    ours, theirs = socket.socketpair()
    try:
        env = dict(os.environ)
        env[CONTROL_FD_ENV] = str(theirs.fileno())
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", spec.module], pass_fds=(theirs.fileno(),), env=env
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    control = trio.socket.from_stdlib_socket(ours)
    await send_message(control, spec.to_json())  # buffered: the child reads it at start
    return Launched(process, control)


class _Watched:
    """A child we did not start through trio: its exit is seen through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._exited = False

    @property
    def alive(self) -> bool:
        return not self._exited

    def signal(self, signum: int) -> None:
        if not self._exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    async def _exit(self) -> None:
        """Return once the process has exited (it may be reaped already)."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            pidfd = None  # already gone and reaped
        if pidfd is not None:
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                os.close(pidfd)
        self._exited = True


class Preforked(_Watched):
    """The first zygote, forked by the supervisor before trio started (see
    ``prefork_zygote``): our child, so we reap it ourselves."""

    def __init__(self, pid: int, control: socket.socket) -> None:
        super().__init__(pid)
        self._control = control
        self.control: trio.socket.SocketType  # made in trio, by adopt()

    def adopt(self) -> Preforked:
        self.control = trio.socket.from_stdlib_socket(self._control)
        return self

    async def wait(self) -> int:
        await self._exit()
        status = _reap_if_ours(self.pid)
        return -1 if status is None else status


def prefork_zygote(spec: ZygoteSpec) -> Preforked:
    """Fork generation 1's zygote from the supervisor itself, before trio runs
    (no thread yet, nothing to inherit but memory): the zygote and all it
    forks then share the supervisor's interpreter and imported modules
    (trio, yaml, ...) instead of loading their own copy (~7 MiB PSS less).
    The code is the same that the supervisor has just loaded from disk; a
    reload or a restart of the zygote execs a fresh one, as before."""
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the zygote; never returns
        code = 1
        try:
            ours.close()
            keep = theirs.fileno()
            # Nothing is open yet at this point of the supervisor's start;
            # closed anyway so that moving the fork later cannot leak the
            # pid file or a listener into every worker.
            os.closerange(3, keep)
            os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(signum, signal.SIG_DFL)
            # By name: the supervisor never imports a worker's code itself.
            code = importlib.import_module(spec.module).run_prefork(spec.to_json(), theirs)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    theirs.close()
    return Preforked(pid, ours)


class Forked(_Watched):
    """A worker the zygote forked: not our child, so its exit status comes
    from the zygote's report."""

    def __init__(self, pid: int, control: trio.socket.SocketType, zygote: Zygote) -> None:
        super().__init__(pid)
        self.control = control
        self._zygote = zygote

    async def wait(self) -> int:
        await self._exit()
        # Orphaned by a zygote that exited first, it is the supervisor's child
        # (a subreaper): collect it here. Otherwise the zygote reports it.
        status = _reap_if_ours(self.pid)
        if status is not None:
            return status
        with trio.move_on_after(_STATUS_WAIT):
            return await self._zygote.exit_status(self.pid)
        status = _reap_if_ours(self.pid)
        return -1 if status is None else status


def _reap_if_ours(pid: int) -> int | None:
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status) if reaped == pid else None


def become_subreaper() -> None:
    """Adopt the orphans of our children (workers whose zygote exited), so
    they are reaped here instead of by PID 1, with their exit status."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Zygote:
    """The supervisor's side of the zygote's control link."""

    def __init__(self, control: trio.socket.SocketType) -> None:
        self.control = control
        self._forked: dict[str, trio.MemorySendChannel[int]] = {}
        self._statuses: dict[int, int] = {}
        self._status_events: dict[int, trio.Event] = {}
        self._send_lock = trio.Lock()

    async def fork(self, child_id: str, spec: WorkerSpec | ApiSpec) -> Forked:
        ours, theirs = socket.socketpair()
        send, receive = trio.open_memory_channel[int](1)
        self._forked[child_id] = send
        try:
            line = encode({"cmd": "fork", "id": child_id, "spec": spec.to_json()})
            fds = array.array("i", [theirs.fileno()])
            async with self._send_lock:
                await self.control.sendmsg([line], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            theirs.close()
            with trio.fail_after(10):
                pid = await receive.receive()
        except BaseException:
            ours.close()
            theirs.close()
            raise
        finally:
            self._forked.pop(child_id, None)
        return Forked(pid, trio.socket.from_stdlib_socket(ours), self)

    def on_message(self, message: dict[str, Any]) -> None:
        """Messages of the zygote: ``forked`` (id, pid) and ``exited`` (pid, status)."""
        if message.get("event") == "forked":
            waiter = self._forked.get(str(message.get("id")))
            if waiter is not None:
                waiter.send_nowait(int(message["pid"]))
        elif message.get("event") == "exited":
            pid = int(message["pid"])
            self._statuses[pid] = int(message["status"])
            self._status_events.pop(pid, trio.Event()).set()

    async def exit_status(self, pid: int) -> int:
        if pid not in self._statuses:
            await self._status_events.setdefault(pid, trio.Event()).wait()
        return self._statuses.pop(pid)
