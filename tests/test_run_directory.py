"""Claiming the run directory: one sidecar per config file, found through its
path, nothing left behind. Files and locks only; no process is started."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from layotto.boundary import config
from layotto.boundary.addresses import control_socket as socket_path
from layotto.boundary.addresses import state_file
from layotto.supervisor.run_directory import (
    StartupError,
    claim_run_dirs,
    holds_pid_file,
    read_pid,
)

LISTENERS = "listeners: {grpc: '127.0.0.1:%d', http: '127.0.0.1:%d'}\n"
HELLO = "hellos: {helloworld: {type: helloworld}}\n"


def sidecar_config(path: Path, port: int = 34904, extra: str = "") -> config.Config:
    path.write_text(LISTENERS % (port, port + 1) + HELLO + extra)
    return config.load(str(path))


@pytest.fixture
def own_dir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="layotto-own-")
    yield os.path.join(directory, "run")
    shutil.rmtree(directory)


def test_the_path_keyed_directory_is_private_locked_and_removed_after(tmp_path: Path) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml")
    home = config.default_run_dir(cfg.source)
    with claim_run_dirs(cfg) as run_dir:
        assert run_dir == home
        assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
        assert holds_pid_file(home) and read_pid(home) == os.getpid()
    assert not os.path.exists(home)


def test_components_state_files_go_with_the_sidecar(tmp_path: Path) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml")
    with claim_run_dirs(cfg) as run_dir:
        for name in ("seq", "seq.tmp"):
            Path(state_file(run_dir, name)).write_text("")
    assert not os.path.exists(run_dir)


def test_a_second_claim_from_the_same_file_is_refused_whatever_its_ports(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    with claim_run_dirs(sidecar_config(path)):
        again = sidecar_config(path, port=45904)
        with (
            pytest.raises(StartupError, match="copy of the file") as refused,
            claim_run_dirs(again),
        ):
            pass
        assert f"pid {os.getpid()}" in str(refused.value)
        assert holds_pid_file(config.default_run_dir(str(path)))  # the first keeps its claim


def test_an_own_run_dir_gets_a_pid_file_and_a_link_where_the_cli_looks(
    tmp_path: Path, own_dir: str
) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml", extra=f"runtime: {{run_dir: '{own_dir}'}}\n")
    home = config.default_run_dir(cfg.source)
    with claim_run_dirs(cfg) as run_dir:
        assert run_dir == own_dir
        assert holds_pid_file(home) and holds_pid_file(own_dir)
        assert os.readlink(socket_path(home)) == socket_path(own_dir)
    assert not os.path.exists(home)
    assert os.listdir(own_dir) == []


def test_two_files_sharing_an_own_run_dir_are_refused(tmp_path: Path, own_dir: str) -> None:
    extra = f"runtime: {{run_dir: '{own_dir}'}}\n"
    with claim_run_dirs(sidecar_config(tmp_path / "a.yaml", extra=extra)):
        other = sidecar_config(tmp_path / "b.yaml", extra=extra)
        with pytest.raises(StartupError, match="in use by another layotto"), claim_run_dirs(other):
            pass
        assert not os.path.exists(config.default_run_dir(str(tmp_path / "b.yaml")))


def test_stale_files_of_a_killed_sidecar_are_replaced(tmp_path: Path, own_dir: str) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml", extra=f"runtime: {{run_dir: '{own_dir}'}}\n")
    home = config.default_run_dir(cfg.source)
    os.makedirs(home, mode=0o700)
    Path(home, "supervisor.pid").write_text("999999\n")
    Path(home, "control.sock").write_text("")  # a dead socket file
    with claim_run_dirs(cfg):
        assert read_pid(home) == os.getpid()
        assert os.readlink(socket_path(home)) == socket_path(own_dir)
    assert not os.path.exists(home)


def test_a_directory_others_can_write_to_is_refused(tmp_path: Path) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml")
    home = config.default_run_dir(cfg.source)
    os.makedirs(home)
    os.chmod(home, 0o777)
    try:
        with pytest.raises(StartupError, match="not a private directory"), claim_run_dirs(cfg):
            pass
    finally:
        os.rmdir(home)


def test_a_planted_pid_file_link_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    cfg = sidecar_config(tmp_path / "a.yaml")
    home = config.default_run_dir(cfg.source)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.makedirs(home, mode=0o700)
    os.symlink(victim, os.path.join(home, "supervisor.pid"))
    try:
        with pytest.raises(StartupError, match="pid file"), claim_run_dirs(cfg):
            pass
        assert victim.read_text() == "precious\n"
    finally:
        shutil.rmtree(home)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_a_directory_squatted_by_another_user_is_refused(tmp_path: Path) -> None:
    """The default directory's name is predictable: another local user may
    create it first. The sidecar (here: root) must not run inside it."""
    cfg = sidecar_config(tmp_path / "a.yaml")
    home = config.default_run_dir(cfg.source)
    os.makedirs(home, mode=0o700)
    os.chown(home, 65534, 65534)
    try:
        with pytest.raises(StartupError, match="not a private directory"), claim_run_dirs(cfg):
            pass
        assert os.listdir(home) == []
    finally:
        shutil.rmtree(home)


def test_an_own_run_dir_others_can_write_to_is_refused(tmp_path: Path, own_dir: str) -> None:
    os.makedirs(own_dir, mode=0o777)
    os.chmod(own_dir, 0o777)
    cfg = sidecar_config(tmp_path / "a.yaml", extra=f"runtime: {{run_dir: '{own_dir}'}}\n")
    with pytest.raises(StartupError, match="not a private directory"), claim_run_dirs(cfg):
        pass
