"""The in-memory sequencer's marks (components/sequencer/marks.py): a worker
started again on the file continues above every id handed out before."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from layotto.components.sequencer.marks import CHUNK, MarkLog
from layotto.components.sequencer.memory import MemorySequencer, create
from layotto.components.sequencer.segments import SegmentCache


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state-seq")


def started(path: str) -> MemorySequencer:
    """A worker's store, started on the file (the last one is never closed:
    a killed worker does not close anything)."""
    return create("seq", {}, "app", state_file=path)


def lines(path: str) -> list[str]:
    return Path(path).read_text().splitlines()


def test_a_restart_continues_above_every_id_handed_out(path: str) -> None:
    first = started(path)
    strong = [first.next_id("s") for _ in range(2 * CHUNK + 5)]
    weak = SegmentCache(first, 50)
    weak_ids = [weak.next_id("w") for _ in range(120)]
    again = started(path)
    assert again.next_id("s") > max(strong)
    assert SegmentCache(again, 50).next_id("w") > max(weak_ids)


def test_most_ids_cost_no_write(path: str) -> None:
    store = started(path)
    for _ in range(5 * CHUNK):
        store.next_id("k")
    assert len(lines(path)) <= 5 + 1  # a line per chunk (the first one included)


def test_opening_compacts_to_one_line_per_key(path: str) -> None:
    store = started(path)
    for key in ("a", "b"):
        for _ in range(3 * CHUNK):
            store.next_id(key)
    assert len(lines(path)) > 2
    started(path)
    assert sorted(lines(path)) == sorted(
        f'["{key}", {mark}]' for key, mark in MarkLog(path).marks.items()
    )
    assert len(lines(path)) == 2


def test_a_torn_last_line_is_ignored_and_closed_off(path: str) -> None:
    Path(path).write_bytes(b'["k", 40]\n["k", 9')  # the writer died mid-line
    log = MarkLog(path)
    assert log.marks == {"k": 40}
    # A file torn after opening (another writer died mid-line): the next
    # append starts a line of its own.
    with open(path, "ab") as f:
        f.write(b'["k", 77')
    assert log.reserve("k", 0, 10) == (40, 50)
    assert MarkLog(path).marks == {"k": 50}


def test_lines_that_do_not_parse_are_ignored(path: str) -> None:
    Path(path).write_bytes(b'["k", 40]\nnot json\n["k", "x"]\n[1, 2]\n["j", 3]\n')
    assert MarkLog(path).marks == {"k": 40, "j": 3}


def test_any_key_round_trips(path: str) -> None:
    key = 'app|||with "quotes",\nnewlines\tand ünïcode'
    log = MarkLog(path)
    log.reserve(key, 0, 5)
    assert MarkLog(path).marks == {key: 5}


def test_two_writers_never_reserve_the_same_ids(path: str) -> None:
    # A hot upgrade that changes the component's config runs its old and new
    # workers side by side for a while.
    old, new = started(path), started(path)
    ids = [store.next_id("k") for _ in range(3 * CHUNK) for store in (old, new)]
    assert len(set(ids)) == len(ids)
    assert started(path).next_id("k") > max(ids)


def test_a_writer_follows_the_file_when_another_compacts_it(path: str) -> None:
    old = started(path)
    before = [old.next_id("k") for _ in range(CHUNK + 1)]
    started(path)  # compacts: renames a new file over the old one's
    after = [old.next_id("k") for _ in range(CHUNK + 1)]
    assert MarkLog(path).marks["k"] >= max(after) > max(before)


def test_a_floor_still_applies_above_the_marks(path: str) -> None:
    started(path).next_id("k")
    store = started(path)
    store.ensure_bigger_than({"k": 10 * CHUNK})
    assert store.next_id("k") == 10 * CHUNK + 1
    assert started(path).next_id("k") > 10 * CHUNK + 1


def test_the_file_is_private_and_never_a_symlink(path: str, tmp_path: Path) -> None:
    started(path).next_id("k")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = str(tmp_path / "state-linked")
    os.symlink(target, link)
    with pytest.raises(OSError):
        MarkLog(link)
    assert target.read_text() == ""
