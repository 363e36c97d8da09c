"""Hot-upgrade benchmark: calls lost, latency and throughput across upgrades, and their cost.

    .venv/bin/python bench/upgrade_bench.py [--upgrades N] [--clients P] [--quick]

In one run, on a private redis-server and private loopback ports:

1. Memory and start-up, no load: whole-sidecar PSS (supervisor + children,
   /proc/<pid>/smaps_rollup) of configs/standalone.yaml, of a Redis config
   with 1 worker per component and with 4 workers per Redis component; exec
   of ``layotto start`` to readiness; one ``layotto reload`` without load.
2. Upgrades under load: the real sidecar on a Redis config (max_connection_age
   2 s, shutdown_grace 5 s, 2 state workers), loaded by P client processes
   (bench/_upgrade_load.py: persistent channels and one-connection-per-call
   callers, rotating every rpc and checking the answers). After a steady
   period, N hot upgrades, alternately ``layotto reload`` and SIGHUP, each
   after the previous one finished, with steady load in between. Every call
   is recorded (start, latency, code) and classified as steady or inside an
   upgrade window [signal, old generation gone].
3. The data-path cost of the upgrade machinery (grpc max_connection_age, i.e.
   GOAWAY and reconnects): the same load against sidecars with age 2 s and
   3600 s (and a second 3600 s one as an A/A control), in alternating rounds.

See bench/README.md, "Upgrade benchmark".
"""

from __future__ import annotations

import argparse
import array
import contextlib
import datetime as dt
import gzip
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _procfs
from _services import (
    BENCH,
    REPO,
    LineReader,
    Processes,
    RedisServer,
    Sidecar,
    spawn,
)

# Same names and order as _upgrade_load.METHODS / KINDS (not imported here: the
# bench process itself never loads grpc, so it shares no pages with the API
# process while its memory is measured).
METHODS = ("SayHello", "SaveState", "GetState", "TryLock", "Unlock", "GetNextId", "GetBulkState")
KINDS = ("persistent", "fresh")
GRPC_CODES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
    -1: "?",
}

LISTENERS = (
    "listeners:\n"
    "  grpc: '127.0.0.1:${LAYOTTO_GRPC_PORT}'\n"
    "  http: '127.0.0.1:${LAYOTTO_HTTP_PORT}'\n"
)


def redis_config(
    state_workers: int = 2, other_workers: int = 1, age: float = 2, grace: float = 5
) -> str:
    """The shape of tests/e2e/test_upgrade.py's redis_config, with worker counts."""
    redis = "{redisHost: '${REDIS_ADDR}', dialTimeout: 500, readTimeout: 1000, maxRetries: 0}"
    return (
        LISTENERS
        + f"runtime: {{max_connection_age: {age:g}, shutdown_grace: {grace:g}, "
        + "request_timeout: 10}\n"
        + "hellos: {helloworld: {type: helloworld}}\n"
        + f"state: {{state_demo: {{type: redis, workers: {state_workers}, metadata: {redis}}}}}\n"
        + f"lock: {{lock_demo: {{type: redis, workers: {other_workers}, metadata: {redis}}}}}\n"
        + "sequencer: {sequencer_demo: {type: redis, "
        + f"workers: {other_workers}, metadata: {redis}}}}}\n"
    )


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def code_version() -> dict[str, Any]:
    """Which code was measured: HEAD plus the files changed on top of it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.rstrip("\n")

    changed = [
        line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    return {"head": git("log", "-1", "--format=%h %s"), "uncommitted": changed}


# --------------------------------------------------------------------------- load processes


def _client_entry(*args: Any) -> None:
    """Runs in the spawned client process; only there is grpc imported."""
    import _upgrade_load  # noqa: PLC0415 - the bench's own process must not load grpc

    _upgrade_load.client_main(*args)


class Fleet:
    """P load-client processes (multiprocessing, spawn), driven over pipes."""

    def __init__(self, clients: int, persistent: int, fresh: int, timeout: float, run: str):
        context = multiprocessing.get_context("spawn")
        self.links: list[Connection] = []
        self.processes: list[Any] = []
        self.timeout = timeout
        for index in range(clients):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_client_entry,
                args=(
                    theirs,
                    {
                        "index": index,
                        "parent": os.getpid(),
                        "persistent": persistent,
                        "fresh": fresh,
                        "timeout": timeout,
                        "run": run,
                    },
                ),
                name=f"upgrade-load-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.links.append(ours)
            self.processes.append(process)
        self.pids = [int(self._receive(link, 60)["pid"]) for link in self.links]

    @staticmethod
    def _receive(link: Connection, timeout: float) -> Any:
        if not link.poll(timeout):
            raise RuntimeError(f"a load process did not answer within {timeout:g} s")
        return link.recv()

    def start(self, target: str, tag: str, seq_key: str) -> None:
        for link in self.links:
            link.send({"cmd": "start", "target": target, "tag": tag, "seq_key": seq_key})
        for link in self.links:
            self._receive(link, 30)

    def stop(self) -> list[dict[str, Any]]:
        for link in self.links:
            link.send({"cmd": "stop"})
        parts = [self._receive(link, self.timeout + 30) for link in self.links]
        hung = [name for part in parts for name in part["hung"]]
        if hung:
            print(f"warning: load threads still in a call after the stop: {hung}", flush=True)
        return parts

    def close(self) -> None:
        for link in self.links:
            with contextlib.suppress(OSError):
                link.send({"cmd": "exit"})
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for link in self.links:
            link.close()


class _FleetStopper:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def stop(self) -> None:
        self.fleet.close()


@dataclass
class Calls:
    """Every call of every load process, as columns."""

    start: array.array[int] = field(default_factory=lambda: array.array("q"))
    latency: array.array[int] = field(default_factory=lambda: array.array("q"))
    code: array.array[int] = field(default_factory=lambda: array.array("b"))
    method: array.array[int] = field(default_factory=lambda: array.array("b"))
    kind: array.array[int] = field(default_factory=lambda: array.array("b"))
    ids: array.array[int] = field(default_factory=lambda: array.array("q"))
    failures: list[dict[str, Any]] = field(default_factory=list)
    wrong: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def merge(cls, parts: Iterable[dict[str, Any]]) -> Calls:
        calls = cls()
        for part in parts:
            for column in ("start", "latency", "code", "method", "kind", "ids"):
                getattr(calls, column).extend(part[column])
            calls.failures += [{**f, "process": part["index"]} for f in part["failures"]]
            calls.wrong += [{**w, "process": part["index"]} for w in part["wrong"]]
        calls.failures.sort(key=lambda f: f["start_ns"])
        return calls

    def __len__(self) -> int:
        return len(self.start)

    def duplicates(self) -> dict[int, int]:
        return {i: n for i, n in Counter(self.ids).items() if n > 1}


def latency_stats(latencies_ns: list[int], seconds: float) -> dict[str, Any]:
    values = sorted(latencies_ns)
    count = len(values)

    def pct(q: float) -> float | None:
        return values[min(count - 1, int(q * count))] / 1e6 if count else None

    return {
        "calls": count,
        "seconds": seconds,
        "rps": count / seconds if seconds > 0 else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": values[-1] / 1e6 if count else None,
    }


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# --------------------------------------------------------------------------- upgrades


PHASES = (
    ("received", r"reload: starting generation {g}\b"),
    # the first of a generation's API processes (runtime.api_processes) to get there
    ("new_api_ready", r"api@{g}#\d+: STARTING -> RUNNING"),
    ("steered", r"\[api gen {old} #\d+ pid \d+\] .*draining"),
    ("old_api_gone", r"api@{old}#\d+: STOPPING -> STOPPED"),
    ("old_workers_gone", r"reload: generation {g} serving"),
)


def upgrade(sidecar: Sidecar, generation: int, how: str, timeout: float) -> dict[str, Any]:
    """One hot upgrade; returns its window [signal, old generation gone] and phases."""
    assert sidecar.output is not None
    mark = len(sidecar.output.lines)
    result: dict[str, Any] = {"generation": generation, "how": how}
    began = time.monotonic()
    command_s = None
    if how == "reload":
        process = spawn(
            [*sidecar.launcher, "reload", "-c", sidecar.config],
            env=sidecar.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output = LineReader(process.stdout)
        try:
            process.wait(timeout=timeout)
        except BaseException:
            process.kill()
            process.wait()
            raise
        command_s = time.monotonic() - began
        printed, _ = output.wait_for(r"reloaded|failed|error|Error", 10)
        result["command_printed_s"] = printed - began  # the answer reached the command
        result["command_output"] = "\n".join(text for _, text in output.lines)
        if process.stdout is not None:
            process.stdout.close()
        if (
            process.returncode != 0
            or f"generation {generation} serving" not in (result["command_output"])
        ):
            raise RuntimeError(
                f"layotto reload failed ({process.returncode}): {result['command_output']}"
            )
    else:
        os.kill(sidecar.pid, signal.SIGHUP)
    at, line = sidecar.output.wait_for(
        rf"reload: generation {generation} serving|reload failed", timeout, after=mark
    )
    if "reload failed" in line:
        raise RuntimeError(line)
    reported = re.search(r"serving \(([\d.]+) s\)", line)
    result["reported_s"] = float(reported.group(1)) if reported else None
    result["log_line_s"] = at - began
    result["command_s"] = command_s
    # The window ends when the old generation is gone: the log line, or the
    # reload command's return (which comes just after it).
    ended = began + (command_s if command_s is not None else at - began)
    result["window_ns"] = [int(began * 1e9), int(ended * 1e9)]
    result["window_s"] = ended - began
    result["phases_s"] = phases_after(sidecar, mark, began, generation)
    return result


def phases_after(
    sidecar: Sidecar, mark: int, began: float, generation: int
) -> dict[str, float | None]:
    """When each step of the upgrade to ``generation`` was logged, in s after ``began``."""
    assert sidecar.output is not None
    phases: dict[str, float | None] = {}
    lines = sidecar.output.lines[mark:]
    for name, pattern in PHASES:
        regex = re.compile(pattern.format(g=generation, old=generation - 1))
        phases[name] = next((t - began for t, text in lines if regex.search(text)), None)
    return phases


def supervisor_check(sidecar: Sidecar, pid: int) -> dict[str, Any]:
    """Is the supervisor we started still the one that runs, holding the pid file?"""
    assert sidecar.output is not None and sidecar.process is not None
    run_dir = None
    for _, line in sidecar.output.lines:
        found = re.search(r"run dir (\S+)", line)
        if found:
            run_dir = found.group(1)
            break
    pid_file = None
    if run_dir is not None:
        try:
            pid_file = int(Path(run_dir, "supervisor.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid_file = None
    status = sidecar.cli("status", timeout=30).stdout
    return {
        "pid_at_start": pid,
        "pid_now": sidecar.process.pid,
        "alive": sidecar.process.poll() is None,
        "pid_file": pid_file,
        "unchanged": sidecar.process.pid == pid
        and sidecar.process.poll() is None
        and pid_file == pid,
        "status": status,
    }


def classify(calls: Calls, windows: list[list[int]], t_from: int, t_to: int) -> list[int]:
    """Per call: -1 outside [t_from, t_to), 0 steady, k+1 inside upgrade window k."""
    out = []
    for began in calls.start:
        if began < t_from or began >= t_to:
            out.append(-1)
            continue
        label = 0
        for k, (w0, w1) in enumerate(windows):
            if w0 <= began <= w1:
                label = k + 1
                break
        out.append(label)
    return out


def where(t_ns: int, upgrades: list[dict[str, Any]]) -> str:
    """A time, relative to the nearest upgrade window."""
    best = ""
    distance = None
    for k, u in enumerate(upgrades):
        w0, w1 = u["window_ns"]
        if w0 <= t_ns <= w1:
            phases = ", ".join(f"{n} {v:+.2f}" for n, v in u["phases_s"].items() if v is not None)
            return f"in upgrade {k + 1} ({u['how']}) at {(t_ns - w0) / 1e9:+.3f} s [{phases}]"
        gap = w0 - t_ns if t_ns < w0 else t_ns - w1
        if distance is None or gap < distance:
            distance = gap
            side = "before" if t_ns < w0 else "after"
            best = f"steady, {gap / 1e9:.2f} s {side} upgrade {k + 1} ({u['how']})"
    return best or "steady (no upgrade)"


def analyse_upgrades(
    calls: Calls, upgrades: list[dict[str, Any]], t_from: int, t_to: int
) -> dict[str, Any]:
    windows = [u["window_ns"] for u in upgrades]
    labels = classify(calls, windows, t_from, t_to)
    upgrade_seconds = sum((w1 - w0) / 1e9 for w0, w1 in windows)
    steady_seconds = (t_to - t_from) / 1e9 - upgrade_seconds
    periods: dict[str, Any] = {}
    for kind_name, kinds in (("all", (0, 1)), ("persistent", (0,)), ("fresh", (1,))):
        steady = [
            lat
            for lat, label, kind in zip(calls.latency, labels, calls.kind, strict=True)
            if label == 0 and kind in kinds
        ]
        during = [
            lat
            for lat, label, kind in zip(calls.latency, labels, calls.kind, strict=True)
            if label > 0 and kind in kinds
        ]
        periods[kind_name] = {
            "steady": latency_stats(steady, steady_seconds),
            "upgrade": latency_stats(during, upgrade_seconds),
        }
    for k, u in enumerate(upgrades):
        inside = [
            (lat, code)
            for lat, code, label in zip(calls.latency, calls.code, labels, strict=True)
            if label == k + 1
        ]
        u["load"] = latency_stats([lat for lat, _ in inside], u["window_s"])
        u["load"]["failed"] = sum(1 for _, code in inside if code != 0)
    phase_stats = upgrade_phase_stats(calls, labels, upgrades)
    by_code = Counter(f["code"] for f in calls.failures)
    failed_steady = sum(1 for c, label in zip(calls.code, labels, strict=True) if c and label == 0)
    failed_upgrade = sum(1 for c, label in zip(calls.code, labels, strict=True) if c and label > 0)
    s_all = periods["all"]
    ratio = None
    if s_all["steady"]["p99_ms"] and s_all["upgrade"]["p99_ms"]:
        ratio = s_all["upgrade"]["p99_ms"] / s_all["steady"]["p99_ms"]
    rps_ratio = None
    if s_all["steady"]["rps"] and s_all["upgrade"]["calls"]:
        rps_ratio = s_all["upgrade"]["rps"] / s_all["steady"]["rps"]
    durations = [u["window_s"] for u in upgrades]
    return {
        "total_calls": len(calls),
        "measured_seconds": (t_to - t_from) / 1e9,
        "failures": len(calls.failures),
        "failures_by_code": dict(by_code),
        "failures_steady": failed_steady,
        "failures_in_upgrades": failed_upgrade,
        "failure_list": [
            {**f, "where": where(f["start_ns"], upgrades)} for f in calls.failures[:200]
        ],
        "wrong": len(calls.wrong),
        "wrong_list": [{**w, "where": where(w["at_ns"], upgrades)} for w in calls.wrong[:200]],
        "ids": len(calls.ids),
        "duplicate_ids": len(calls.duplicates()),
        "duplicate_id_list": sorted(calls.duplicates().items())[:50],
        "by_method": dict(Counter(METHODS[m] for m in calls.method)),
        "periods": periods,
        "phases": phase_stats,
        "p99_ratio_upgrade_over_steady": ratio,
        "rps_ratio_upgrade_over_steady": rps_ratio,
        "upgrade_s_median": statistics.median(durations) if durations else None,
        "upgrade_s_max": max(durations) if durations else None,
    }


UPGRADE_PHASES = (
    ("starting", "signal -> new API ready", None, "new_api_ready"),
    ("draining", "new API ready -> old API gone", "new_api_ready", "old_api_gone"),
    ("retiring", "old API gone -> old workers gone", "old_api_gone", None),
)


def upgrade_phase_stats(
    calls: Calls, labels: list[int], upgrades: list[dict[str, Any]]
) -> dict[str, Any]:
    """Latency of the calls started in each phase of the upgrades, all upgrades together."""
    bounds: list[list[tuple[int, int]]] = []  # per upgrade, per phase: [t0, t1] in ns
    for u in upgrades:
        w0, w1 = u["window_ns"]
        phases = u["phases_s"]
        spans = []
        for _, _, first, last in UPGRADE_PHASES:
            a = w0 if first is None else phases.get(first)
            b = w1 if last is None else phases.get(last)
            if a is None or b is None:
                spans.append((0, -1))
                continue
            t0 = a if first is None else w0 + int(a * 1e9)
            t1 = b if last is None else w0 + int(b * 1e9)
            spans.append((int(t0), int(t1)))
        bounds.append(spans)
    latencies: list[list[int]] = [[] for _ in UPGRADE_PHASES]
    for began, lat, label in zip(calls.start, calls.latency, labels, strict=True):
        if label <= 0:
            continue
        for index, (t0, t1) in enumerate(bounds[label - 1]):
            if t0 <= began < t1:
                latencies[index].append(lat)
                break
    result = {}
    for index, (name, meaning, _, _) in enumerate(UPGRADE_PHASES):
        seconds = sum(max(0, spans[index][1] - spans[index][0]) / 1e9 for spans in bounds)
        result[name] = {"meaning": meaning, **latency_stats(latencies[index], seconds)}
    return result


def _ticks_with_reaped(pid: int) -> int | None:
    """utime + stime + cutime + cstime: the process and every child it has reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    return sum(int(v) for v in fields[11:15])


class CpuSampler:
    """CPU of the bench and everything it started, while processes come and go.

    Every 0.2 s it reads utime+stime of every process below the bench, and of
    every process it has seen there before: a worker forked by a zygote is
    reparented to PID 1 (and reaped there) when its zygote exits first, so the
    cutime of our processes would miss it. A process that exits loses at most
    its last 0.2 s; one born during the window counts from 0.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample(initial=True)
        self._thread.start()

    def _sample(self, initial: bool = False) -> None:
        me = os.getpid()
        for pid in {me, *_procfs.descendants_of(me), *self.last}:
            ticks = _procfs.cpu_ticks(pid)
            if ticks is None:
                continue
            if pid not in self.first:
                self.first[pid] = ticks if initial else 0
            self.last[pid] = ticks

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def run_upgrades(
    args: argparse.Namespace,
    *,
    redis: RedisServer,
    procs: Processes,
    fleet: Fleet,
    tmp: Path,
    report: dict[str, Any],
) -> None:
    config = tmp / "upgrade.yaml"
    config.write_text(redis_config(state_workers=2, age=2, grace=5))
    report["upgrade_config"] = config.read_text()
    sidecar = Sidecar(str(config), {"REDIS_ADDR": redis.address})
    procs.add("sidecar (upgrades)", sidecar)
    sidecar.start()
    supervisor = sidecar.pid
    print(
        f"  sidecar ready (supervisor pid {supervisor}); load: {args.clients} processes x "
        f"({args.persistent} persistent + {args.fresh} fresh-connection callers)",
        flush=True,
    )
    fleet.start(sidecar.target, "up", f"{report['run']}-up-seq")
    time.sleep(args.warmup)
    busy0, sampler = _procfs.machine_busy_ticks(), CpuSampler()
    t_from = time.monotonic_ns()
    time.sleep(args.steady)
    upgrades: list[dict[str, Any]] = []
    for index in range(args.upgrades):
        how = "reload" if index % 2 == 0 else "SIGHUP"
        result = upgrade(sidecar, index + 2, how, timeout=180)
        upgrades.append(result)
        ph = result["phases_s"]
        label = "layotto reload" if how == "reload" else how
        print(
            f"  upgrade {index + 1}/{args.upgrades} ({label}): generation {index + 2} serving; "
            f"window {result['window_s']:.2f} s (supervisor: {result['reported_s']} s); "
            f"s after the signal: received {_f(ph['received'], 2)}, new API ready "
            f"{_f(ph['new_api_ready'], 2)}, steered {_f(ph['steered'], 2)}, old API gone "
            f"{_f(ph['old_api_gone'], 2)}, old workers gone {_f(ph['old_workers_gone'], 2)}",
            flush=True,
        )
        time.sleep(args.gap)
    t_to = time.monotonic_ns()
    ours, busy1 = sampler.stop(), _procfs.machine_busy_ticks()
    calls = Calls.merge(fleet.stop())
    report["supervisor"] = supervisor_check(sidecar, supervisor)
    sidecar.stop()
    procs.remove(sidecar)
    report["upgrades"] = upgrades
    report["upgrade_load"] = analyse_upgrades(calls, upgrades, t_from, t_to)
    report["upgrade_load"]["t_from_ns"] = t_from
    report["upgrade_load"]["foreign_cores"] = (
        ((busy1 - busy0) - ours) / _procfs.HZ / ((t_to - t_from) / 1e9)
    )
    save_calls(calls, t_from, report["calls_file"])


def save_calls(calls: Calls, t0: int, path: Path) -> None:
    """Every call as columns (µs relative to the steady start), gzipped JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        "t0_ns": t0,
        "start_us": [(s - t0) // 1000 for s in calls.start],
        "latency_us": [lat // 1000 for lat in calls.latency],
        "code": list(calls.code),
        "method": list(calls.method),
        "kind": list(calls.kind),
        "methods": METHODS,
        "kinds": KINDS,
        "codes": GRPC_CODES,
    }
    with gzip.open(path, "wt") as f:
        json.dump(columns, f)


# --------------------------------------------------------------------------- data-path cost


def _tree(sidecar: Sidecar) -> list[int]:
    return [sidecar.pid, *_procfs.descendants_of(sidecar.pid)]


def run_throughput(
    args: argparse.Namespace,
    *,
    redis: RedisServer,
    procs: Processes,
    fleet: Fleet,
    tmp: Path,
    report: dict[str, Any],
) -> None:
    """Alternating rounds against sidecars with age 2 s and 3600 s (and an A/A control)."""
    setups = [("X", 2.0), ("Y", 3600.0)]
    if args.control:
        setups.append(("Z", 3600.0))
    sidecars: dict[str, Sidecar] = {}
    for name, age in setups:
        path = tmp / f"tput-{name}.yaml"
        path.write_text(redis_config(state_workers=2, age=age, grace=5))
        sidecar = Sidecar(str(path), {"REDIS_ADDR": redis.address})
        procs.add(f"sidecar {name}", sidecar)
        sidecar.start()
        sidecars[name] = sidecar
    ages = dict(setups)
    print(
        "  sidecars ready: "
        + ", ".join(f"{n} (max_connection_age {a:g} s)" for n, a in setups)
        + f"; {args.tput_rounds} round(s) x {args.tput_seconds:g} s each",
        flush=True,
    )
    names = [n for n, _ in setups]
    rounds: list[dict[str, Any]] = []
    for r in range(args.tput_rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result = throughput_round(
                args,
                fleet=fleet,
                sidecars=sidecars,
                name=name,
                run=report["run"],
            )
            result.update({"round": r + 1, "sidecar": name, "age_s": ages[name]})
            rounds.append(result)
            print(
                f"  round {r + 1}/{args.tput_rounds} {name} (age {ages[name]:g} s): "
                f"{result['rps']:,.0f} req/s, p50 {_f(result['p50_ms'])} ms, p99 "
                f"{_f(result['p99_ms'])} ms, sidecar CPU {result['cpu_us_per_req']:,.0f} µs/req, "
                f"failed {result['failed']}, foreign cores {result['foreign_cores']:.2f}",
                flush=True,
            )
    for name in names:
        sidecars[name].stop()
        procs.remove(sidecars[name])
    report["throughput"] = summarise_throughput(rounds, setups)


def throughput_round(
    args: argparse.Namespace,
    *,
    fleet: Fleet,
    sidecars: dict[str, Sidecar],
    name: str,
    run: str,
) -> dict[str, Any]:
    sidecar = sidecars[name]
    fleet.start(sidecar.target, f"t{name}", f"{run}-t{name}-seq")
    time.sleep(args.tput_warmup)
    tree = _tree(sidecar)
    ours = [os.getpid(), *_procfs.descendants_of(os.getpid())]
    ticks0 = {pid: _ticks_with_reaped(pid) for pid in ours}
    busy0 = _procfs.machine_busy_ticks()
    t0 = time.monotonic_ns()
    time.sleep(args.tput_seconds)
    t1 = time.monotonic_ns()
    busy1 = _procfs.machine_busy_ticks()
    ticks1 = {pid: _ticks_with_reaped(pid) for pid in ours}
    calls = Calls.merge(fleet.stop())
    delta = {
        pid: (ticks1[pid] or 0) - (ticks0[pid] or 0)
        for pid in ours
        if ticks0[pid] is not None and ticks1[pid] is not None
    }
    wall = (t1 - t0) / 1e9
    inside = [
        (lat, code)
        for began, lat, code in zip(calls.start, calls.latency, calls.code, strict=True)
        if t0 <= began + lat <= t1
    ]
    ok = [lat for lat, code in inside if code == 0]
    stats = latency_stats(ok, wall)
    count = max(1, len(ok))
    stats.update(
        {
            "rps": len(ok) / wall,
            "failed": sum(1 for _, code in inside if code != 0),
            "failed_all": len(calls.failures),
            "failures_by_code": dict(Counter(f["code"] for f in calls.failures)),
            "wrong": len(calls.wrong),
            "ids": list(calls.ids),
            "cpu_us_per_req": sum(delta.get(p, 0) for p in tree) / _procfs.HZ * 1e6 / count,
            "client_cpu_us_per_req": sum(delta.get(p, 0) for p in fleet.pids)
            / _procfs.HZ
            * 1e6
            / count,
            "foreign_cores": ((busy1 - busy0) - sum(delta.values())) / _procfs.HZ / wall,
        }
    )
    return stats


def summarise_throughput(
    rounds: list[dict[str, Any]], setups: list[tuple[str, float]]
) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for name, age in setups:
        mine = [r for r in rounds if r["sidecar"] == name]
        per[name] = {
            "age_s": age,
            "rounds": len(mine),
            "rps_mean": statistics.fmean(r["rps"] for r in mine),
            "rps_min": min(r["rps"] for r in mine),
            "rps_max": max(r["rps"] for r in mine),
            "p50_ms_median": statistics.median(r["p50_ms"] or 0 for r in mine),
            "p99_ms_median": statistics.median(r["p99_ms"] or 0 for r in mine),
            "cpu_us_per_req_median": statistics.median(r["cpu_us_per_req"] for r in mine),
            "failed": sum(r["failed_all"] for r in mine),
            "wrong": sum(r["wrong"] for r in mine),
        }
    duplicates = 0
    for name, _ in setups:  # each sidecar's load draws ids from its own key
        ids = Counter(i for r in rounds if r["sidecar"] == name for i in r["ids"])
        duplicates += sum(1 for n in ids.values() if n > 1)
    for r in rounds:
        r["ids"] = len(r["ids"])
    result: dict[str, Any] = {
        "per_sidecar": per,
        "rounds": rounds,
        "duplicate_ids": duplicates,
        "ratio_x_over_y": per["X"]["rps_mean"] / per["Y"]["rps_mean"],
        "cpu_ratio_x_over_y": per["X"]["cpu_us_per_req_median"] / per["Y"]["cpu_us_per_req_median"],
    }
    if "Z" in per:
        result["control_z_over_y"] = per["Z"]["rps_mean"] / per["Y"]["rps_mean"]
        result["cpu_control_z_over_y"] = (
            per["Z"]["cpu_us_per_req_median"] / per["Y"]["cpu_us_per_req_median"]
        )
    return result


# --------------------------------------------------------------------------- memory, start-up


def sidecar_memory(sidecar: Sidecar) -> dict[str, Any]:
    """PSS of the supervisor and every process below it, by role."""
    names = sidecar.names()
    per: dict[str, float] = {}
    total = _procfs.Memory()
    roles = {"supervisor": 0.0, "api": 0.0, "workers": 0.0, "other": 0.0}
    workers = 0
    tree = _tree(sidecar)
    # A supervised process can leave the tree: a worker kept across a reload
    # was forked by the old zygote, and is reparented to PID 1 when that exits.
    outside = [
        pid
        for pid in names
        if pid not in tree
        and _procfs.parent_of(pid) is not None
        and "layotto" in _procfs.cmdline(pid)
    ]
    for pid in tree + outside:
        memory = _procfs.memory(pid)
        total = total + memory
        name = names.get(pid) or _procfs.cmdline(pid).split()[-1]
        per[f"{pid} {name}"] = memory.pss_kib / 1024
        if pid == sidecar.pid:
            role = "supervisor"
        elif name == "api" or name.startswith("api "):
            role = "api"
        elif name.startswith("worker"):
            role = "workers"
        else:  # e.g. a zygote the workers are forked from
            role = "other"
        roles[role] += memory.pss_kib / 1024
        workers += role == "workers"
    return {
        "pss_mib": total.pss_kib / 1024,
        "uss_mib": total.uss_kib / 1024,
        "processes": len(per),
        "outside_tree": [
            f"{pid} {names[pid]} (parent {_procfs.parent_of(pid)})" for pid in outside
        ],
        "workers": workers,
        "pss_by_role_mib": roles,
        "per_process_pss_mib": per,
    }


def reload_without_load(sidecar: Sidecar) -> dict[str, Any]:
    assert sidecar.output is not None
    mark = len(sidecar.output.lines)
    began = time.monotonic()
    done = sidecar.cli("reload", timeout=120)
    wall = time.monotonic() - began
    found = re.search(r"serving \(([\d.]+) s\)", done.stdout)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"layotto reload failed: {done.stdout}{done.stderr}")
    sidecar.output.wait_for(r"reload: generation 2 serving", 10, after=mark)
    started = [
        m.group(1)
        for _, line in sidecar.output.lines[mark:]
        if (m := re.search(r"supervisor: (\S+): STOPPED -> STARTING", line))
    ]
    return {
        "command_s": wall,
        "reported_s": float(found.group(1)),
        "phases_s": phases_after(sidecar, mark, began, 2),
        "started": started,
    }


def run_memory(
    args: argparse.Namespace, redis: RedisServer, procs: Processes, tmp: Path
) -> dict[str, Any]:
    one, four = tmp / "redis-1.yaml", tmp / "redis-4.yaml"
    one.write_text(redis_config(state_workers=1, other_workers=1))
    four.write_text(redis_config(state_workers=4, other_workers=4))
    env = {"REDIS_ADDR": redis.address}
    configs = [
        ("standalone.yaml (in-memory, 1 each)", "configs/standalone.yaml", {}),
        ("redis, 1 worker per component", str(one), env),
        ("redis, 4 per Redis component", str(four), env),
    ]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in configs}
    for attempt in range(args.starts):
        for label, path, extra in configs:
            sidecar = Sidecar(path, extra)
            procs.add(f"sidecar {label}", sidecar)
            try:
                sidecar.start()
                time.sleep(args.settle)
                after_start = sidecar_memory(sidecar)
                reloaded = reload_without_load(sidecar)
                time.sleep(args.settle)
                after_reload = sidecar_memory(sidecar)
            finally:
                sidecar.stop()
                procs.remove(sidecar)
            runs[label].append(
                {
                    "exec_to_ready_s": sidecar.exec_to_ready_s,
                    "reported_ready_s": sidecar.reported_ready_s,
                    "stop_s": sidecar.stop_s,
                    "after_start": after_start,
                    "reload": reloaded,
                    "after_reload": after_reload,
                }
            )
            print(
                f"  {attempt + 1}/{args.starts} {label}: ready after "
                f"{sidecar.exec_to_ready_s:.2f} s, {after_start['processes']} processes, PSS "
                f"{after_start['pss_mib']:.1f} MiB (after a reload {after_reload['pss_mib']:.1f}"
                + (
                    f", {len(after_reload['outside_tree'])} of its "
                    f"{after_reload['processes']} processes not below the supervisor: "
                    + ", ".join(after_reload["outside_tree"])
                    if after_reload["outside_tree"]
                    else ""
                )
                + "); "
                f"reload without load {reloaded['command_s']:.2f} s "
                f"(supervisor: {reloaded['reported_s']:.2f} s; started "
                f"{', '.join(reloaded['started'])}; "
                + ", ".join(f"{k} {_f(v, 2)}" for k, v in reloaded["phases_s"].items())
                + ")",
                flush=True,
            )
    return {label: summarise_memory(items) for label, items in runs.items()}


def summarise_memory(items: list[dict[str, Any]]) -> dict[str, Any]:
    def med(get: Callable[[dict[str, Any]], float]) -> float:
        return float(statistics.median(get(r) for r in items))

    last = items[-1]["after_start"]
    return {
        "starts": len(items),
        "processes": last["processes"],
        "workers": last["workers"],
        "pss_mib": med(lambda r: r["after_start"]["pss_mib"]),
        "uss_mib": med(lambda r: r["after_start"]["uss_mib"]),
        "pss_by_role_mib": {
            role: float(statistics.median(r["after_start"]["pss_by_role_mib"][role] for r in items))
            for role in ("supervisor", "api", "workers", "other")
        },
        "pss_after_reload_mib": med(lambda r: r["after_reload"]["pss_mib"]),
        "exec_to_ready_s": med(lambda r: r["exec_to_ready_s"]),
        "exec_to_ready_s_range": [
            min(r["exec_to_ready_s"] for r in items),
            max(r["exec_to_ready_s"] for r in items),
        ],
        "reported_ready_s": med(lambda r: r["reported_ready_s"] or 0),
        "reload_command_s": med(lambda r: r["reload"]["command_s"]),
        "reload_reported_s": med(lambda r: r["reload"]["reported_s"]),
        "runs": items,
    }


# --------------------------------------------------------------------------- report


def lines_upgrades(report: dict[str, Any], args: argparse.Namespace) -> list[str]:
    a = report["upgrade_load"]
    p = a["periods"]
    out = [
        f"Hot upgrades under load: {len(report['upgrades'])} upgrades (layotto reload and SIGHUP "
        f"alternately), {args.clients} client processes x ({args.persistent} persistent + "
        f"{args.fresh} fresh-connection callers), max_connection_age 2 s, shutdown_grace 5 s, "
        "2 state workers",
        f"  calls: {a['total_calls']:,} (measured window {a['measured_seconds']:.1f} s, plus "
        f"{args.warmup:g} s warm-up); by method: "
        + ", ".join(f"{m} {n:,}" for m, n in a["by_method"].items()),
        f"  failures: {a['failures']}"
        + (
            " (" + ", ".join(f"{c} {n}" for c, n in sorted(a["failures_by_code"].items())) + ")"
            if a["failures"]
            else ""
        )
        + f"; during upgrade windows {a['failures_in_upgrades']}, steady {a['failures_steady']}",
        f"  wrong answers: {a['wrong']}; sequencer ids: {a['ids']:,}, duplicates: "
        f"{a['duplicate_ids']}",
        f"  foreign cores (machine busy CPU that is not ours) over the window: "
        f"{a['foreign_cores']:.2f}",
        "",
        f"  {'period':<18} {'callers':<11} {'time s':>7} {'calls':>8} {'req/s':>7} "
        f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>8}",
    ]
    for period, label in (("steady", "steady"), ("upgrade", "upgrade windows")):
        for kind in ("all", "persistent", "fresh"):
            s = p[kind][period]
            out.append(
                f"  {label if kind == 'all' else '':<18} {kind:<11} {s['seconds']:>7.1f} "
                f"{s['calls']:>8,} {s['rps']:>7,.0f} {_f(s['p50_ms']):>7} {_f(s['p90_ms']):>7} "
                f"{_f(s['p99_ms']):>7} {_f(s['p999_ms']):>8} {_f(s['max_ms']):>8}"
            )
    for name, ph in a["phases"].items():
        out.append(
            f"  {'  ' + name:<18} {'all':<11} {ph['seconds']:>7.1f} {ph['calls']:>8,} "
            f"{ph['rps']:>7,.0f} {_f(ph['p50_ms']):>7} {_f(ph['p90_ms']):>7} "
            f"{_f(ph['p99_ms']):>7} {_f(ph['p999_ms']):>8} {_f(ph['max_ms']):>8}  "
            f"({ph['meaning']})"
        )
    out.append(
        f"  p99(upgrade)/p99(steady) = {_f(a['p99_ratio_upgrade_over_steady'], 2)}; "
        f"req/s(upgrade)/req/s(steady) = {_f(a['rps_ratio_upgrade_over_steady'], 2)}"
    )
    out += [
        "",
        f"  {'#':>2} {'how':<7} {'window s':>8} {'superv. s':>9} {'received':>8} {'new API':>8} "
        f"{'steered':>8} {'old API':>8} {'old wrk':>8} {'cmd out':>7} {'calls':>6} {'failed':>6} "
        f"{'p99 ms':>7}",
    ]
    for k, u in enumerate(report["upgrades"]):
        ph = u["phases_s"]
        cells = [
            f"{k + 1:>2}",
            f"{u['how']:<7}",
            f"{u['window_s']:>8.2f}",
            f"{_f(u['reported_s'], 2):>9}",
            *(
                f"{_f(ph[name], 2):>8}"
                for name in ("received", "new_api_ready", "steered", "old_api_gone")
            ),
            f"{_f(ph['old_workers_gone'], 2):>8}",
            f"{_f(u.get('command_printed_s'), 2):>7}",
            f"{u['load']['calls']:>6,}",
            f"{u['load']['failed']:>6}",
            f"{_f(u['load']['p99_ms']):>7}",
        ]
        out.append("  " + " ".join(cells))
    out.append(
        "  (received .. old wrk: when the supervisor logged each step, s after the signal or the "
        "exec of `layotto reload`; cmd out: when the command printed its answer)"
    )
    out.append(
        f"  upgrade duration (signal -> old generation gone): median "
        f"{_f(a['upgrade_s_median'], 2)} s, max {_f(a['upgrade_s_max'], 2)} s"
    )
    sup = report["supervisor"]
    generation = len(report["upgrades"]) + 1
    first = sup["status"].splitlines()[0] if sup["status"] else ""
    serving = f"generation {generation}" in first
    out.append(
        f"  supervisor pid {sup['pid_at_start']} at start, {sup['pid_now']} at the end, "
        f"alive {sup['alive']}, pid file {sup['pid_file']}: "
        + ("UNCHANGED" if sup["unchanged"] else "CHANGED")
        + f"; `layotto status`: generation {generation} {'serving' if serving else 'NOT shown'}"
    )
    for f in a["failure_list"][:20]:
        out.append(
            f"  FAILED {f['method']} ({f['kind']}, {f['caller']}): {f['code']}: {f['details']!r}; "
            f"{f['where']}; took {(f['end_ns'] - f['start_ns']) / 1e6:.1f} ms"
        )
    for w in a["wrong_list"][:20]:
        out.append(f"  WRONG {w['method']} ({w['caller']}): {w['what']}; {w['where']}")
    return out


def lines_throughput(report: dict[str, Any], args: argparse.Namespace) -> list[str]:
    t = report["throughput"]
    out = [
        "Data-path cost of max_connection_age (GOAWAY + reconnects): the same load, alternating "
        f"rounds of {args.tput_seconds:g} s (+{args.tput_warmup:g} s warm-up)",
        f"  {'sidecar':<18} {'age s':>6} {'rounds':>6} {'req/s mean':>10} {'(min-max)':<13} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>10} {'failed':>6}",
    ]
    for name, s in t["per_sidecar"].items():
        label = {"X": "X", "Y": "Y", "Z": "Z (A/A control)"}[name]
        spread = f"({s['rps_min']:,.0f}-{s['rps_max']:,.0f})"
        out.append(
            f"  {label:<18} {s['age_s']:>6g} {s['rounds']:>6} {s['rps_mean']:>10,.0f} "
            f"{spread:<13} {_f(s['p50_ms_median']):>7} {_f(s['p99_ms_median']):>7} "
            f"{s['cpu_us_per_req_median']:>10,.0f} {s['failed']:>6}"
        )
    line = (
        f"  throughput ratio X/Y (age 2 s / 3600 s) = {t['ratio_x_over_y']:.3f}; "
        f"sidecar CPU per request X/Y = {t['cpu_ratio_x_over_y']:.3f}"
    )
    if "control_z_over_y" in t:
        line += (
            f"; A/A control Z/Y = {t['control_z_over_y']:.3f} (CPU {t['cpu_control_z_over_y']:.3f})"
        )
    out.append(line)
    foreign = [r["foreign_cores"] for r in t["rounds"]]
    out.append(
        f"  duplicate ids: {t['duplicate_ids']}; foreign cores per round: "
        f"{min(foreign):.2f} to {max(foreign):.2f}"
    )
    return out


def lines_memory(memory: dict[str, Any]) -> list[str]:
    out = [
        "Memory and start-up, no load (PSS summed over the supervisor and every process "
        "below it, 1 s after ready; medians over starts)",
        f"  {'config':<36} {'procs':>5} {'PSS MiB':>8} {'= sup':>6} {'+ api':>6} {'+ wrk':>6} "
        f"{'+ other':>7} "
        f"{'USS MiB':>8} {'after reload':>12} {'start->ready s':>14} {'reload s':>8}",
    ]
    for label, m in memory.items():
        r = m["pss_by_role_mib"]
        lo, hi = m["exec_to_ready_s_range"]
        ready = (
            f"{m['exec_to_ready_s']:.2f} ({lo:.2f}-{hi:.2f})"
            if m["starts"] > 1
            else (f"{m['exec_to_ready_s']:.2f}")
        )
        out.append(
            f"  {label:<36} {m['processes']:>5} {m['pss_mib']:>8.1f} {r['supervisor']:>6.1f} "
            f"{r['api']:>6.1f} {r['workers']:>6.1f} {r['other']:>7.1f} {m['uss_mib']:>8.1f} "
            f"{m['pss_after_reload_mib']:>12.1f} {ready:>14} {m['reload_command_s']:>8.2f}"
        )
    keys = list(memory)
    if len(keys) == 3:
        one, four = memory[keys[1]], memory[keys[2]]
        extra = four["workers"] - one["workers"]
        if extra > 0:
            out.append(
                f"  each extra worker: {(four['pss_mib'] - one['pss_mib']) / extra:.1f} MiB PSS "
                f"({extra} more workers: {one['workers']} -> {four['workers']})"
            )
    out.append(
        "  reload s = `layotto reload` command wall time (supervisor's own figures: "
        + ", ".join(f"{m['reload_reported_s']:.2f}" for m in memory.values())
        + ")"
    )
    for label, m in memory.items():
        last = m["runs"][-1]["reload"]
        out.append(f"  reload of {label} started: {', '.join(last['started'])}")
        orphans = m["runs"][-1]["after_reload"]["outside_tree"]
        if orphans:
            out.append(
                f"    after it, supervised but not below the supervisor (counted): "
                f"{', '.join(orphans)}"
            )
    return out


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrades", type=int, default=None, help="hot upgrades (default 5)")
    parser.add_argument("--clients", type=int, default=3, help="load processes (default 3)")
    parser.add_argument("--persistent", type=int, default=4, help="persistent callers/process")
    parser.add_argument("--fresh", type=int, default=2, help="fresh-connection callers/process")
    parser.add_argument("--quick", action="store_true", help="2 upgrades, short windows")
    parser.add_argument("--steady", type=float, default=None, help="steady s before upgrades (5)")
    parser.add_argument("--gap", type=float, default=None, help="steady s after each upgrade (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="load warm-up s (1)")
    parser.add_argument("--tput-seconds", type=float, default=None, help="round length (3 s)")
    parser.add_argument("--tput-rounds", type=int, default=None, help="rounds per sidecar (6)")
    parser.add_argument("--tput-warmup", type=float, default=0.5)
    parser.add_argument("--no-control", dest="control", action="store_false")
    parser.add_argument("--starts", type=int, default=None, help="starts per config (2)")
    parser.add_argument("--settle", type=float, default=1.0, help="s after ready before PSS (1)")
    parser.add_argument("--call-timeout", type=float, default=20.0)
    parser.add_argument("--skip", default="", help="comma list of: memory, upgrades, throughput")
    parser.add_argument("--out", default="", help="JSON file (default bench/results/...)")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "upgrades": 2 if quick else 5,
        "steady": 3.0 if quick else 5.0,
        "gap": 2.0 if quick else 3.0,
        "tput_seconds": 2.0 if quick else 3.0,
        "tput_rounds": 2 if quick else 6,
        "starts": 1 if quick else 2,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.skip = {s for s in args.skip.split(",") if s}
    return args


def run(args: argparse.Namespace, procs: Processes, report: dict[str, Any], tmp: Path) -> None:
    print("starting a private redis-server", flush=True)
    redis = RedisServer()
    procs.add("redis-server", redis)
    if "memory" not in args.skip:
        print(f"memory and start-up, no load: {args.starts} start(s) per config", flush=True)
        report["memory"] = run_memory(args, redis, procs, tmp)
    print(f"starting {args.clients} load processes", flush=True)
    fleet = Fleet(args.clients, args.persistent, args.fresh, args.call_timeout, report["run"])
    procs.add("load processes", _FleetStopper(fleet))
    if "upgrades" not in args.skip:
        print(
            f"hot upgrades under load: {args.steady:g} s steady, then {args.upgrades} upgrades "
            f"with {args.gap:g} s of steady load after each",
            flush=True,
        )
        run_upgrades(args, redis=redis, procs=procs, fleet=fleet, tmp=tmp, report=report)
    if "throughput" not in args.skip:
        print("data-path cost of max_connection_age", flush=True)
        run_throughput(args, redis=redis, procs=procs, fleet=fleet, tmp=tmp, report=report)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    started = dt.datetime.now().astimezone()
    stamp = f"{started:%Y%m%d-%H%M%S}"
    out = Path(args.out) if args.out else BENCH / "results" / f"upgrade_bench-{stamp}.json"
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/upgrade_bench.py", *sys.argv[1:]]),
        "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()},
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        },
        "code": code_version(),
        "run": uuid.uuid4().hex[:8],
        "calls_file": out.with_name(out.stem + "-calls.json.gz"),
    }
    procs = Processes()
    began = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="layotto-upgrade-bench-")
    try:
        run(args, procs, report, Path(tmp))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the bench started", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut clean-up
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The load first: a sidecar stops faster with no clients hammering it.
        for _, stopper in list(procs.stoppers):
            if isinstance(stopper, _FleetStopper):
                procs.remove(stopper)
                stopper.stop()
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    report["seconds"] = time.monotonic() - began
    code = report["code"]
    lines = [
        "",
        f"{started:%Y-%m-%d %H:%M %Z}; code: {code['head']}"
        + (f" + uncommitted {', '.join(code['uncommitted'])}" if code["uncommitted"] else "")
        + f"; {os.cpu_count()} vCPUs; run took {report['seconds']:.0f} s",
        f"command: {report['command']}",
    ]
    if "upgrades" in report:
        lines += ["", *lines_upgrades(report, args)]
    if "throughput" in report:
        lines += ["", *lines_throughput(report, args)]
    if "memory" in report:
        lines += ["", *lines_memory(report["memory"])]
    print("\n".join(lines))
    report["table"] = lines
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nJSON: {out}")
    ok = "upgrade_load" not in report or (
        report["upgrade_load"]["failures"] == 0
        and report["upgrade_load"]["wrong"] == 0
        and report["upgrade_load"]["duplicate_ids"] == 0
        and report["supervisor"]["unchanged"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
