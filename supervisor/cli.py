"""The `layotto` command: start, stop, status, check.

Every command finds its sidecar through the config file's path alone (the
run directory is keyed by it), whatever the file says now and whatever the
environment: see supervisor/run_directory.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from layotto.boundary import config as config_module
from layotto.boundary.config import Config, ConfigError
from layotto.supervisor.run_directory import holds_pid_file, read_pid

EXIT_CONFIG_ERROR = 2
EXIT_NO_ANSWER = 4  # the command was sent but its outcome is unknown


class CommandFailedError(Exception):
    """Ends a command with this message on stderr and this exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _load(path: str | None) -> Config:
    return config_module.load(path or config_module.default_config_path())


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    kinds = sorted({c.kind for c in config.components})
    print(
        f"{config.source}: OK ({len(config.components)} components: {', '.join(kinds)}; "
        f"gRPC {config.listeners.grpc}, HTTP {config.listeners.http})"
    )
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logging.basicConfig(
        level=getattr(logging, config.runtime.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s [supervisor pid %(process)d] %(name)s: %(message)s",
    )
    from layotto.supervisor.runner import run  # noqa: PLC0415 - `check` loads no trio

    return run(config)


def _run_dir(args: argparse.Namespace) -> str:
    """Where the sidecar started from this config file answers. The file is
    not read: it may have been edited, broken or deleted since."""
    return config_module.default_run_dir(args.config or config_module.default_config_path())


def _say_not_running(args: argparse.Namespace, run_dir: str) -> None:
    path = os.path.abspath(args.config or config_module.default_config_path())
    print(f"layotto is not running for {path} (no supervisor in {run_dir})", file=sys.stderr)


def _ask_dir(
    args: argparse.Namespace, run_dir: str, cmd: str, cmd_args: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The supervisor's answer, or None if none runs there."""
    from layotto.supervisor.control import (  # noqa: PLC0415 - as in start
        ControlError,
        NoAnswerError,
        NotRunningError,
        request,
    )

    try:
        return request(run_dir, cmd, cmd_args)
    except NotRunningError:
        return None
    except NoAnswerError as exc:
        status = "layotto status" + (f" -c {args.config}" if args.config else "")
        advice = (
            "It is running but not answering: its log may say why."
            if cmd == "status"
            else f"The {cmd} may still be under way, or may have finished: check `{status}`."
        )
        raise CommandFailedError(f"layotto {cmd}: {exc}. {advice}", EXIT_NO_ANSWER) from exc
    except ControlError as exc:
        raise CommandFailedError(f"layotto {cmd}: {exc}", 1) from exc


def _mutate(
    args: argparse.Namespace,
    cmd: str,
    cmd_args: dict[str, Any] | None,
    success: Callable[[dict[str, Any]], str],
) -> int:
    """Send a reload/scale command to the running sidecar and report its answer."""
    run_dir = _run_dir(args)
    answer = _ask_dir(args, run_dir, cmd, cmd_args)
    if answer is None:
        _say_not_running(args, run_dir)
        return 3
    if not answer.get("ok"):
        print(f"{cmd} failed: {answer.get('error')}", file=sys.stderr)
        return 1
    print(success(answer))
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    return _mutate(
        args,
        "reload",
        None,
        lambda answer: (
            f"reloaded: generation {answer['generation']} serving ({answer['seconds']:.2f} s)"
        ),
    )


def cmd_scale(args: argparse.Namespace) -> int:
    return _mutate(
        args,
        "scale",
        {"component": args.component, "workers": args.workers},
        lambda answer: f"{answer['component']}: {answer['workers']} worker(s)",
    )


def cmd_stop(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)

    pid = read_pid(run_dir)
    answer = _ask_dir(args, run_dir, "stop")
    if answer is None:
        _say_not_running(args, run_dir)
        return 1
    deadline = time.monotonic() + args.timeout
    while holds_pid_file(run_dir):
        if time.monotonic() > deadline:
            print(
                f"layotto (pid {pid}) is still stopping after {args.timeout:g} s", file=sys.stderr
            )
            return 1
        time.sleep(0.05)
    print("layotto stopped")
    return 0


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_status(answer: dict[str, Any]) -> str:
    header = ("PROCESS", "ROLE", "PID", "STATE", "HEALTH", "RESTARTS", "UPTIME", "REQUESTS", "NOTE")
    rows = [header]
    for p in answer["processes"]:
        rows.append(
            (
                p["name"],
                p["role"],
                str(p["pid"] or "-"),
                p["state"],
                p["health"],
                str(p["restarts"]),
                _uptime(p["uptime"]),
                "-" if p["requests"] is None else str(p["requests"]),
                p["reason"] or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"layotto: {'READY' if answer['ready'] else 'NOT READY'}"
        f"{' (stopping)' if answer.get('stopping') else ''} - {answer['config']}"
        f" - generation {answer.get('generation', 1)}"
        + (f" - {answer['operation']} under way" if answer.get("operation") else "")
    ]
    last = answer.get("last_reload")
    if last:
        lines.append(
            f"last reload: ok, generation {last['generation']} in {last['seconds']:.2f} s"
            if last["ok"]
            else f"last reload: FAILED: {last['error']}"
        )
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args)
    answer = _ask_dir(args, run_dir, "status")
    if answer is None:
        _say_not_running(args, run_dir)
        return 3
    print(format_status(answer))
    return 0 if answer.get("ready") else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="layotto", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("start", cmd_start, "run the supervised sidecar in the foreground"),
        ("stop", cmd_stop, "stop the sidecar started with this config"),
        ("status", cmd_status, "show every process of the running sidecar"),
        ("check", cmd_check, "validate a config file and print every problem"),
        (
            "reload",
            cmd_reload,
            "hot-upgrade: re-read the config, replace every process, "
            "fail no call (same as kill -HUP)",
        ),
        ("scale", cmd_scale, "change the number of worker processes of a component"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c",
            "--config",
            help="config file (default: the embedded in-memory configs/standalone.yaml)",
        )
        command.set_defaults(func=func)
        if name == "scale":
            command.add_argument("component", help="component name, e.g. state_demo")
            command.add_argument("workers", type=int, help="number of worker processes")
        if name == "stop":
            command.add_argument(
                "--timeout", type=float, default=60.0, help="seconds to wait for the stop to finish"
            )
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
    except CommandFailedError as exc:
        print(exc, file=sys.stderr)
        code = exc.code
    sys.exit(code)


if __name__ == "__main__":
    main()
