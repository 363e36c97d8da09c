"""The run directory: how one config file makes one sidecar, found by the CLI.

The CLI looks for a sidecar only at `default_run_dir(<config file>)`, keyed by
the file's path (see docs/design.md). The supervisor holds a lock on the pid
file there for its lifetime, so a second `layotto start` from the same file is
refused, whatever ports the environment gives it. When `runtime.run_dir` names
another directory, that one holds the sockets and a pid file of its own, and
the path-keyed one keeps the locked pid file and a link to the control socket.
No module here imports trio: the CLI uses the readers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Callable, Iterator

# The names every caller here uses for the run directory's files (boundary/addresses.py).
from layotto.boundary.addresses import STATE_PREFIX
from layotto.boundary.addresses import control_socket as socket_path
from layotto.boundary.addresses import pid_file as pid_path
from layotto.boundary.config import Config, default_run_dir


class StartupError(Exception):
    """The sidecar cannot start; the message says why and what to do."""


def read_pid(run_dir: str) -> int | None:
    try:
        with open(pid_path(run_dir)) as f:
            return int(f.read().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def holds_pid_file(run_dir: str) -> bool:
    """True while a supervisor holds the pid file's lock (a zombie does not)."""
    try:
        handle = open(pid_path(run_dir))  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


@contextlib.contextmanager
def claim_run_dirs(config: Config) -> Iterator[str]:
    """Hold the sidecar's directories while the block runs; yields the run directory.

    Raises StartupError if another sidecar holds them. On the way out the
    components' state files, the pid files and the link go, and so does the
    path-keyed directory once empty.
    """
    home = default_run_dir(config.source)
    run_dir = config.run_dir()
    with contextlib.ExitStack() as stack:
        _make_private_dir(home)
        stack.callback(_remove_if_empty, home)  # last, after everything in it is gone
        stack.enter_context(
            _locked_pid_file(
                home,
                lambda pid: (
                    f"layotto is already running for {config.source} (pid {pid}, "
                    f"pid file in {home}): one config file runs one sidecar. Stop it with "
                    f"`layotto stop -c {config.source}`, or start another from a copy of the file"
                ),
            )
        )
        if run_dir != home:
            _make_private_dir(run_dir)
            stack.enter_context(
                _locked_pid_file(
                    run_dir,
                    lambda pid: (
                        f"runtime.run_dir {run_dir} is in use by another layotto (pid {pid}); "
                        "give each sidecar its own run_dir"
                    ),
                )
            )
            stack.enter_context(_link(socket_path(run_dir), socket_path(home)))
        stack.callback(_remove_state_files, run_dir)  # first: every worker has stopped
        yield run_dir


def _make_private_dir(path: str) -> None:
    """Create `path` with mode 0700. It lives in a directory anyone can write
    to: one made by someone else could take our control socket, so refuse it."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StartupError(
            f"{path} is not a private directory of this user (owner uid {info.st_uid}, "
            f"mode {stat.filemode(info.st_mode)}); remove it and start again"
        )


@contextlib.contextmanager
def _locked_pid_file(directory: str, busy: Callable[[int | None], str]) -> Iterator[None]:
    """Our pid in `directory`'s pid file, exclusively locked while the block runs."""
    path = pid_path(directory)
    try:
        # Never through a link: one planted here would have us truncate and
        # overwrite whatever file it points to.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(f"cannot open the pid file {path}: {exc.strerror}") from None
    handle = os.fdopen(fd, "r+")
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(busy(read_pid(directory))) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_path(directory))


@contextlib.contextmanager
def _link(target: str, link: str) -> Iterator[None]:
    """A symlink at `link` while the block runs; replaces a stale one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(target, link)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)


def _remove_state_files(run_dir: str) -> None:
    """What components kept past their workers' deaths lives as long as the
    sidecar: in-memory data is gone after a stop by design."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(run_dir):
            if name.startswith(STATE_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(run_dir, name))


def _remove_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)
