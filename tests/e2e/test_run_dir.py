"""The CLI finds a running sidecar from its config file's path alone: not from
the environment it was started in, nor from what the file says now."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layotto.boundary.config import default_run_dir
from tests.redis_server import free_port
from tests.sidecar import LAYOTTO, REPO, Sidecar, running_sidecar

STANDALONE = REPO / "configs" / "standalone.yaml"


def without_ports(sidecar: Sidecar) -> dict[str, str]:
    """The sidecar's environment minus the variables its listeners came from."""
    env = dict(sidecar.env)
    del env["LAYOTTO_GRPC_PORT"], env["LAYOTTO_HTTP_PORT"]
    return env


def assert_stops(sidecar: Sidecar, env: dict[str, str] | None = None) -> None:
    stopped = sidecar.cli("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert sidecar.process is not None and sidecar.process.wait(timeout=30) == 0


def test_stop_and_status_do_not_need_the_environment_of_start() -> None:
    with running_sidecar(STANDALONE) as sidecar:  # its ports come from LAYOTTO_*_PORT
        bare = without_ports(sidecar)
        status = sidecar.cli("status", env=bare)
        assert status.returncode == 0, status.stderr
        assert "READY" in status.stdout
        # the same file named by a relative path from elsewhere
        folder, name = os.path.split(sidecar.config)
        relative = subprocess.run(
            [LAYOTTO, "status", "-c", name],
            cwd=folder,
            env=bare,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert relative.returncode == 0, relative.stderr
        assert_stops(sidecar, bare)


def test_reload_after_the_port_was_edited_is_refused_by_the_sidecar() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        path = Path(sidecar.config)
        path.write_text(path.read_text().replace("${LAYOTTO_GRPC_PORT:-34904}", str(free_port())))
        result = sidecar.cli("reload")
        assert result.returncode == 1, result.stderr
        assert "listeners changed" in result.stderr and "restart" in result.stderr
        status = sidecar.cli("status")
        assert "generation 1" in status.stdout and "last reload: FAILED" in status.stdout


DAMAGE: dict[str, Callable[[Path], None]] = {
    "syntax error": lambda path: path.write_text("listeners: [unclosed\n"),
    "emptied": lambda path: path.write_text(""),
    "deleted": lambda path: path.unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_status_and_stop_reach_the_sidecar_whatever_became_of_its_file(
    damage: Callable[[Path], None],
) -> None:
    with running_sidecar(STANDALONE) as sidecar:
        damage(Path(sidecar.config))
        status = sidecar.cli("status")
        assert status.returncode == 0, status.stderr
        assert "READY" in status.stdout
        assert_stops(sidecar)


@pytest.fixture
def own_run_dir() -> Iterator[Path]:
    # Short: worker sockets live there, and unix socket paths are limited.
    directory = tempfile.mkdtemp(prefix="layotto-own-")
    yield Path(directory) / "run"
    shutil.rmtree(directory)


def test_a_sidecar_with_its_own_run_dir_is_found_after_its_file_is_deleted(
    tmp_path: Path, own_run_dir: Path
) -> None:
    config = tmp_path / "own.yaml"
    config.write_text(
        "listeners:\n"
        "  grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}'\n"
        "  http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'\n"
        f"runtime: {{run_dir: '{own_run_dir}'}}\n"
        "hellos: {helloworld: {type: helloworld}}\n"
    )
    with running_sidecar(config) as sidecar:
        assert (own_run_dir / "control.sock").exists()
        Path(sidecar.config).unlink()
        status = sidecar.cli("status")
        assert status.returncode == 0, status.stderr
        assert_stops(sidecar)
    # nothing of the stopped sidecar is left where the CLI would look
    assert not os.path.exists(default_run_dir(sidecar.config))
    assert sorted(os.listdir(own_run_dir)) == []


def test_a_second_sidecar_from_the_same_file_is_refused_even_on_other_ports() -> None:
    with running_sidecar(STANDALONE) as sidecar:
        env = dict(sidecar.env)
        env.update(LAYOTTO_GRPC_PORT=str(free_port()), LAYOTTO_HTTP_PORT=str(free_port()))
        second = subprocess.run(
            [LAYOTTO, "start", "-c", sidecar.config],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 1
        assert "already running" in second.stderr and "copy of the file" in second.stderr
        assert sidecar.cli("status").returncode == 0
