"""The control socket's client: what the CLI gets when the supervisor answers
late, half or never. Fake supervisors on a real unix socket; no sidecar."""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layotto.boundary import config
from layotto.boundary.addresses import control_socket as socket_path
from layotto.supervisor import cli, control
from layotto.supervisor.control import NoAnswerError, request


@pytest.fixture
def run_dir() -> Iterator[str]:
    # Not tmp_path: a unix socket path must stay under 108 bytes.
    directory = tempfile.mkdtemp(prefix="layotto-ctl-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def listen(run_dir: str) -> socket.socket:
    """A supervisor that never answers: the kernel completes the connection
    (backlog) and takes the request, nobody replies."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path(run_dir))
    server.listen(4)
    return server


def serve_once(run_dir: str, reply: Callable[[socket.socket], None]) -> threading.Thread:
    server = listen(run_dir)

    def accept() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                select.select([connection], [], [])  # the request has arrived
                reply(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return thread


def test_a_supervisor_that_never_answers_is_a_no_answer_error(run_dir: str) -> None:
    with listen(run_dir), pytest.raises(NoAnswerError, match="did not answer reload"):
        request(run_dir, "reload", timeout=0.05)


@pytest.mark.parametrize("cmd", ["reload", "scale"])
def test_reload_and_scale_wait_as_long_as_the_supervisor_may_take(
    run_dir: str, cmd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The supervisor answers by its own limit for the command; the client
    # waits that long plus a margin for the answer to arrive.
    monkeypatch.setattr(control, "COMMAND_TIMEOUTS", {"reload": 0.125, "scale": 0.25})
    monkeypatch.setattr(control, "ANSWER_MARGIN", 0.0625)
    with listen(run_dir), pytest.raises(NoAnswerError) as caught:
        request(run_dir, cmd)
    assert caught.value.timeout == control.COMMAND_TIMEOUTS[cmd] + control.ANSWER_MARGIN


def test_the_default_wait_is_the_table_plus_the_margin() -> None:
    for cmd in ("reload", "scale"):
        expected = control.COMMAND_TIMEOUTS[cmd] + control.ANSWER_MARGIN
        assert control.client_timeout(cmd) == expected
    assert control.client_timeout("status") > control.ANSWER_MARGIN


def test_an_answer_cut_short_is_a_no_answer_error(run_dir: str) -> None:
    def half(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.sendall(b'{"ok": tr')

    thread = serve_once(run_dir, half)
    with pytest.raises(NoAnswerError, match="closed the connection"):
        request(run_dir, "scale", timeout=10)
    thread.join()


def test_a_connection_reset_is_a_no_answer_error(run_dir: str) -> None:
    # Closing with the request unread resets the client's side (ECONNRESET).
    thread = serve_once(run_dir, lambda connection: None)
    with pytest.raises(NoAnswerError, match="broke"):
        request(run_dir, "reload", timeout=10)
    thread.join()


def test_cli_says_what_happened_and_what_to_do_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "layotto.yaml"
    path.write_text(
        "listeners: {grpc: '127.0.0.1:1', http: '127.0.0.1:2'}\n"
        "hellos: {helloworld: {type: helloworld}}\n"
    )
    directory = config.load(str(path)).run_dir()
    os.makedirs(directory, mode=0o700)
    monkeypatch.setattr(control, "COMMAND_TIMEOUTS", {"reload": 0.05})
    monkeypatch.setattr(control, "ANSWER_MARGIN", 0.0)
    try:
        with listen(directory), pytest.raises(SystemExit) as exited:
            cli.main(["reload", "-c", str(path)])
    finally:
        shutil.rmtree(directory)
    assert exited.value.code == cli.EXIT_NO_ANSWER
    err = capsys.readouterr().err
    assert "did not answer reload" in err
    assert f"layotto status -c {path}" in err
    assert "Traceback" not in err
