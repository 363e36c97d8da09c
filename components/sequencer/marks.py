"""Each key's high-water mark, in a file that outlives the worker process.

The in-memory sequencer counts in its worker's memory; a worker killed and
restarted would hand the same ids out again. So it hands out ids only below
a mark written here first: when a key reaches its mark, the sequencer
reserves the next chunk with one small append (``["key", mark]`` and a
newline), and a new worker starts above the largest mark of each key. Most
ids cost no I/O; ids stay unique and increasing across any kill, with a gap
of at most a chunk where a worker died.

The file is appended under an exclusive ``flock``, and a reservation first
reads what others appended since (a hot upgrade that changes the component's
config runs its old and new workers side by side for a while): every
reservation is above every mark in the file. Opening compacts the file to
one line per key, written to a temporary file and renamed over it; whoever
then takes the lock on the old file sees that the path names another file,
and opens that. A line that does not parse (a write cut short) is ignored:
it reserved nothing, since ids are handed out only after the write returned.
No fsync: the file outlives the process, not the machine (nor does the
run directory, which may well be on tmpfs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator, Mapping

from layotto.components.sequencer.base import MAX_ID

CHUNK = 1000  # ids reserved beyond what a call needs: one append per this many ids


def _open(path: str, flags: int) -> int:
    """A regular file of ours, never through a symlink, private to this user."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):  # disk full: what was written is a torn line, ignored
        raise OSError(f"short write to the sequencer's marks ({written} of {len(data)} bytes)")


def _line(key: str, mark: int) -> bytes:
    return json.dumps([key, mark], ensure_ascii=False).encode() + b"\n"


def _parse(line: bytes) -> tuple[str, int] | None:
    try:
        key, mark = json.loads(line)
    except ValueError:
        return None
    if not isinstance(key, str) or not isinstance(mark, int):
        return None
    return key, mark


class MarkLog:
    """Not thread-safe: the sequencer calls it under its own lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1
        self._offset = 0  # how far this process has read the file
        self._torn = False  # the file ends in part of a line
        self._marks: dict[str, int] = {}
        with self._locked():
            self._compact()

    @property
    def marks(self) -> Mapping[str, int]:
        """Each key's mark: no id above it was handed out by anyone."""
        return dict(self._marks)

    def reserve(self, key: str, above: int, count: int) -> tuple[int, int]:
        """Reserve ``count`` ids of ``key`` above ``above`` and above every
        mark in the file; returns (base, mark): ids base+1 .. mark are the
        caller's, and are written down before this returns."""
        with self._locked():
            base = max(above, self._marks.get(key, 0))
            mark = min(base + count, MAX_ID)
            line = _line(key, mark)
            _write_all(self._fd, b"\n" + line if self._torn else line)
            self._torn = False
            self._offset = os.fstat(self._fd).st_size
            self._marks[key] = mark
            return base, mark

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock on the file the path names now, having read it to the end."""
        while True:
            if self._fd < 0:
                self._fd = _open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
                self._offset = 0
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            held = os.fstat(self._fd)
            try:
                named = os.stat(self._path, follow_symlinks=False)
            except FileNotFoundError:
                named = None
            if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
                break
            self.close()  # compacted (renamed over) or removed: open what the path names now
        try:
            self._read_new()
            yield
        finally:
            if self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _read_new(self) -> None:
        chunks, position = [], self._offset
        while chunk := os.pread(self._fd, 1 << 16, position):
            chunks.append(chunk)
            position += len(chunk)
        data = b"".join(chunks)
        complete = data.rfind(b"\n") + 1
        for line in data[:complete].split(b"\n"):
            parsed = _parse(line)
            if parsed is not None:
                key, mark = parsed
                self._marks[key] = max(mark, self._marks.get(key, 0))
        self._offset += complete
        self._torn = complete < len(data)

    def _compact(self) -> None:
        """Rewrite the file as one line per key (called holding the lock)."""
        body = b"".join(_line(key, mark) for key, mark in self._marks.items())
        temporary = self._path + ".tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)  # left by a worker killed while compacting
        fd = _open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            _write_all(fd, body)
        finally:
            os.close(fd)
        os.rename(temporary, self._path)
        # Still locked: the old file, so anyone waiting for it finds the new one.
        old, self._fd = self._fd, _open(self._path, os.O_RDWR | os.O_APPEND)
        os.close(old)
        self._offset, self._torn = len(body), False
