"""`layotto status` output and the command line, without a running sidecar."""

from __future__ import annotations

from typing import Any

import pytest

from layotto.supervisor import cli
from layotto.supervisor.cli import format_status, parser

HEADER = ("PROCESS", "ROLE", "PID", "STATE", "HEALTH", "RESTARTS", "UPTIME", "REQUESTS", "NOTE")


def process(**fields: Any) -> dict[str, Any]:
    row = {
        "name": "api",
        "role": "api",
        "component": "",
        "pid": 4100,
        "state": "RUNNING",
        "restarts": 0,
        "uptime": 75.4,
        "health": "UP",
        "requests": 1234,
        "reason": "",
    }
    row.update(fields)
    return row


def answer(*processes: dict[str, Any], ready: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "ready": ready,
        "stopping": False,
        "config": "/etc/layotto/config.yaml",
        "processes": list(processes),
        **extra,
    }


SAMPLE = answer(
    process(),
    process(
        name="state.redis-0",
        role="state/redis",
        pid=4101,
        restarts=2,
        uptime=3725.0,
        requests=None,
    ),
    process(
        name="lock.in-memory-0",
        role="lock/in-memory",
        pid=None,
        state="BACKOFF",
        health="UNKNOWN",
        restarts=12,
        uptime=None,
        requests=None,
        reason="killed by SIGKILL",
    ),
    ready=False,
)


def cells(line: str, starts: list[int]) -> list[str]:
    bounds = [*starts[1:], None]
    return [line[a:b].strip() for a, b in zip(starts, bounds, strict=True)]


def test_one_line_per_process_after_the_header() -> None:
    lines = format_status(SAMPLE).splitlines()
    assert len(lines) == 2 + len(SAMPLE["processes"])
    assert lines[1].split() == list(HEADER)
    assert [line.split()[0] for line in lines[2:]] == ["api", "state.redis-0", "lock.in-memory-0"]


def test_columns_are_aligned() -> None:
    lines = format_status(SAMPLE).splitlines()
    header = lines[1]
    starts = [header.index(title) for title in HEADER]
    assert starts == sorted(starts)
    rows = [cells(line, starts) for line in lines[2:]]
    for line, row in zip(lines[2:], rows, strict=True):
        # each cell begins exactly where its title begins, after at least one space
        for start, cell in zip(starts, row, strict=True):
            if cell:
                assert line[start : start + len(cell)] == cell
                assert start == 0 or line[start - 1] == " "
    assert rows[0] == ["api", "api", "4100", "RUNNING", "UP", "0", "1:15", "1234", ""]
    assert rows[1] == [
        "state.redis-0", "state/redis", "4101", "RUNNING", "UP", "2", "1:02:05", "-", "",
    ]  # fmt: skip
    assert rows[2] == [
        "lock.in-memory-0", "lock/in-memory", "-", "BACKOFF", "UNKNOWN", "12", "-", "-",
        "killed by SIGKILL",
    ]  # fmt: skip


def test_no_trailing_spaces() -> None:
    for line in format_status(SAMPLE).splitlines():
        assert line == line.rstrip()


@pytest.mark.parametrize(
    ("ready", "stopping", "first"),
    [
        (True, False, "layotto: READY - /etc/layotto/config.yaml - generation 1"),
        (False, False, "layotto: NOT READY - /etc/layotto/config.yaml - generation 1"),
        (False, True, "layotto: NOT READY (stopping) - /etc/layotto/config.yaml - generation 1"),
    ],
)
def test_readiness_line(ready: bool, stopping: bool, first: str) -> None:
    text = format_status(answer(process(), ready=ready, stopping=stopping))
    assert text.splitlines()[0] == first


def test_missing_values_are_dashes() -> None:
    row = format_status(answer(process(pid=None, uptime=None, requests=None))).splitlines()[2]
    assert row.split() == ["api", "api", "-", "RUNNING", "UP", "0", "-", "-"]


def test_zero_requests_is_not_a_dash() -> None:
    row = format_status(answer(process(requests=0))).splitlines()[2]
    assert row.split()[7] == "0"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0:00"), (59.9, "0:59"), (61.0, "1:01"), (3599.0, "59:59"), (3600.0, "1:00:00"),
     (90061.0, "25:01:01")],
)  # fmt: skip
def test_uptime(seconds: float, text: str) -> None:
    row = format_status(answer(process(uptime=seconds))).splitlines()[2]
    assert row.split()[6] == text


def test_no_processes_still_has_a_header() -> None:
    lines = format_status(answer(ready=False)).splitlines()
    assert len(lines) == 2
    assert lines[1].split() == list(HEADER)


# -- the parser ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "func"),
    [
        ("start", cli.cmd_start),
        ("stop", cli.cmd_stop),
        ("status", cli.cmd_status),
        ("check", cli.cmd_check),
    ],
)
def test_commands_accept_a_config(command: str, func: object) -> None:
    for flag in ("-c", "--config"):
        args = parser().parse_args([command, flag, "conf.yaml"])
        assert (args.command, args.config, args.func) == (command, "conf.yaml", func)
    assert parser().parse_args([command]).config is None


def test_stop_has_a_timeout() -> None:
    assert parser().parse_args(["stop"]).timeout == 60.0
    assert parser().parse_args(["stop", "--timeout", "2.5"]).timeout == 2.5
    with pytest.raises(SystemExit):
        parser().parse_args(["status", "--timeout", "1"])


@pytest.mark.parametrize(
    "argv", [[], ["restart"], ["scale", "s"], ["check", "-x"], ["check", "-c"]]
)
def test_bad_command_lines_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 2
    assert "usage: layotto" in capsys.readouterr().err


def test_generation_operation_and_last_reload_are_shown() -> None:
    data = answer(process(), ready=True, stopping=False)
    data.update(
        generation=3,
        operation="reload",
        last_reload={"ok": False, "error": "bad key", "generation": 2},
    )
    lines = format_status(data).splitlines()
    assert lines[0].endswith("generation 3 - reload under way")
    assert lines[1] == "last reload: FAILED: bad key"
    data["last_reload"] = {"ok": True, "generation": 3, "seconds": 4.5}
    assert format_status(data).splitlines()[1] == "last reload: ok, generation 3 in 4.50 s"
