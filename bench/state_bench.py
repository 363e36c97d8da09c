"""State API benchmark: the sidecar on Redis vs an in-process baseline vs Redis directly.

    .venv/bin/python bench/state_bench.py [--seconds S] [--reps N] [--quick]

Measures GetState and SaveState (100-byte values; 1 caller, and 16 callers
sharing one channel) side by side, interleaving the systems in every
repetition so that noise on this shared 2-vCPU VM hits them alike:

* sidecar  -- the real ``layotto start -c configs/redis.yaml`` (supervisor, API
  process, workers over nng) on a private redis-server and private ports;
* baseline -- one process with the same libraries: a sync grpcio server (32
  threads, as the API process) calling redis-py from the handler
  (bench/_baseline_server.py);
* redis    -- redis-py GET/SET from the load process, no gRPC at all.

The load runs in a separate process (bench/_load.py). Server CPU per request
comes from /proc/<pid>/stat (utime+stime) deltas over the measured window,
per process; "foreign_cores" is the machine's busy CPU that none of our
processes account for. Also measured: start-up time (exec to the
"layotto ready" log line) and PSS of the whole sidecar for
configs/standalone.yaml and configs/redis.yaml. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _procfs
import _profile
from _services import BENCH, Baseline, Load, Processes, RedisServer, Sidecar, source_tree

CASES = [
    ("GetState", "get", 1),
    ("GetState", "get", 16),
    ("SaveState", "save", 1),
    ("SaveState", "save", 16),
]
SYSTEMS = ("sidecar", "baseline", "redis")
AGAINST = "sidecar@ref"  # the sidecar of --against GIT_REF
ROLE_ORDER = ("supervisor", "api", "zygote", "workers", "baseline", "redis")
ROLE_SHORT = {
    "supervisor": "sup",
    "api": "api",
    "zygote": "zyg",
    "workers": "wrk",
    "baseline": "base",
    "redis": "redis",
}
STORE = "state_demo"


@dataclass
class System:
    name: str
    kind: str  # "grpc" or "redis"
    target: str
    groups: Callable[[], dict[str, list[int]]]  # role -> pids of the server side


def case_label(case: tuple[str, str, int], system: str = "") -> str:
    name, op, callers = case
    if system == "redis":
        name = "GET" if op == "get" else "SET"
    return f"{name} x{callers}"


# --------------------------------------------------------------------------- measuring


def measure(
    system: System,
    case: tuple[str, str, int],
    load: Load,
    everyone: Callable[[], list[int]],
    *,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """One repetition: warm up, then sample CPU around a window of ``seconds``."""
    _, op, callers = case
    groups = system.groups()
    answer = load.ask(
        {
            "cmd": "start",
            "kind": system.kind,
            "target": system.target,
            "store": STORE,
            "key_prefix": system.name.split()[0],
            "op": op,
            "callers": callers,
        }
    )
    if not answer.get("ok"):
        raise RuntimeError(f"{system.name} {case_label(case)}: {answer.get('error')}")
    time.sleep(warmup)
    ours = sorted(set(everyone()))
    server = [pid for pids in groups.values() for pid in pids]
    ticks0 = {pid: _procfs.cpu_ticks(pid) for pid in ours}
    switches0 = sum(_procfs.context_switches(pid) for pid in server)
    busy0 = _procfs.machine_busy_ticks()
    t0 = time.monotonic_ns()
    time.sleep(seconds)
    t1 = time.monotonic_ns()
    busy1 = _procfs.machine_busy_ticks()
    switches1 = sum(_procfs.context_switches(pid) for pid in server)
    ticks1 = {pid: _procfs.cpu_ticks(pid) for pid in ours}
    result = load.ask({"cmd": "stop", "t0": t0, "t1": t1})

    wall = (t1 - t0) / 1e9
    delta = {
        pid: (ticks1[pid] or 0) - (ticks0[pid] or 0)
        for pid in ours
        if ticks0[pid] is not None and ticks1[pid] is not None
    }
    count = max(1, result["count"])

    def us_per_req(pids: list[int]) -> float:
        return sum(delta.get(pid, 0) for pid in pids) / _procfs.HZ * 1e6 / count

    cpu = {role: us_per_req(pids) for role, pids in groups.items()}
    result.update(
        {
            "system": system.name,
            "case": case_label(case),
            "cpu_us_per_req": cpu,
            "server_cpu_us_per_req": sum(cpu.values()),
            "client_cpu_us_per_req": us_per_req([load.pid]),
            "per_process_cpu_us_per_req": {str(pid): us_per_req([pid]) for pid in server},
            "server_cores": sum(delta.get(pid, 0) for pid in server) / _procfs.HZ / wall,
            "client_cores": delta.get(load.pid, 0) / _procfs.HZ / wall,
            "context_switches_per_req": (switches1 - switches0) / count,
            "foreign_cores": ((busy1 - busy0) - sum(delta.values())) / _procfs.HZ / wall,
        }
    )
    return result


def memory_of(pids: list[int], names: dict[int, str] | None = None) -> dict[str, Any]:
    per = {pid: _procfs.memory(pid) for pid in pids}
    total = sum(per.values(), _procfs.Memory())
    return {
        "pss_mib": total.pss_kib / 1024,
        "uss_mib": total.uss_kib / 1024,
        "rss_mib": total.rss_kib / 1024,
        "processes": len(pids),
        "per_process": {
            f"{pid} {(names or {}).get(pid, _procfs.cmdline(pid)[-40:])}": {
                "pss_mib": m.pss_kib / 1024,
                "uss_mib": m.uss_kib / 1024,
                "rss_mib": m.rss_kib / 1024,
            }
            for pid, m in per.items()
        },
    }


def sidecar_memory(sidecar: Sidecar) -> dict[str, Any]:
    return memory_of([sidecar.pid, *sidecar.children()], sidecar.names())


def sidecar_system(sidecar: Sidecar, redis_pid: int | None, name: str = "sidecar") -> System:
    def groups() -> dict[str, list[int]]:
        found = sidecar.roles()
        if redis_pid is not None:
            found["redis"] = [redis_pid]
        return found

    return System(name, "grpc", sidecar.target, groups)


def measure_startups(starts: int, redis: RedisServer, procs: Processes) -> dict[str, Any]:
    """exec -> "layotto ready" wall time, interleaving the two configs."""
    configs = {"standalone.yaml": {}, "redis.yaml": {"REDIS_ADDR": redis.address}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for attempt in range(starts):
        for name, env in configs.items():
            sidecar = Sidecar(f"configs/{name}", env)
            procs.add(f"sidecar {name}", sidecar)
            try:
                sidecar.start()
                memory = sidecar_memory(sidecar)
            finally:
                sidecar.stop()
                procs.remove(sidecar)
            runs[name].append(
                {
                    "exec_to_ready_s": sidecar.exec_to_ready_s,
                    "reported_ready_s": sidecar.reported_ready_s,
                    "stop_s": sidecar.stop_s,
                    "processes": memory["processes"],
                    "pss_after_start_mib": memory["pss_mib"],
                }
            )
            print(
                f"  start {attempt + 1}/{starts} {name}: ready after "
                f"{sidecar.exec_to_ready_s:.2f} s (self-reported {sidecar.reported_ready_s} s), "
                f"{memory['processes']} processes, PSS {memory['pss_mib']:.0f} MiB, "
                f"stopped in {sidecar.stop_s or 0:.2f} s",
                flush=True,
            )
    summary = {}
    for name, items in runs.items():
        ready = [r["exec_to_ready_s"] for r in items]
        summary[name] = {
            "exec_to_ready_s_median": statistics.median(ready),
            "exec_to_ready_s_min": min(ready),
            "exec_to_ready_s_max": max(ready),
            "reported_ready_s_median": statistics.median(
                r["reported_ready_s"] for r in items if r["reported_ready_s"] is not None
            ),
            "stop_s_median": statistics.median(r["stop_s"] or 0 for r in items),
            "processes": items[-1]["processes"],
            "runs": items,
        }
    return summary


def standalone_memory(
    load: Load, everyone_base: Callable[[], list[int]], procs: Processes, seconds: float
) -> dict[str, Any]:
    """PSS of the in-memory sidecar after start and after a short 16-caller load."""
    sidecar = Sidecar("configs/standalone.yaml")
    procs.add("sidecar standalone", sidecar)
    try:
        sidecar.start()
        after_start = sidecar_memory(sidecar)
        system = sidecar_system(sidecar, None, "sidecar (in-memory)")
        quick_runs = []
        for case in CASES:
            result = measure(
                system,
                case,
                load,
                lambda: [*everyone_base(), sidecar.pid, *sidecar.children()],
                warmup=0.3,
                seconds=seconds,
            )
            quick_runs.append(result)
            print(
                f"  standalone.yaml {case_label(case)}: {result['rps']:,.0f} req/s, "
                f"p50 {result['p50_us']:,.0f} µs, server CPU "
                f"{result['server_cpu_us_per_req']:,.0f} µs/req",
                flush=True,
            )
        after_load = sidecar_memory(sidecar)
    finally:
        sidecar.stop()
        procs.remove(sidecar)
    return {"after_start": after_start, "after_load": after_load, "load_runs": quick_runs}


# --------------------------------------------------------------------------- summaries


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(reps: list[dict[str, Any]]) -> dict[str, Any]:
    roles = sorted({role for r in reps for role in r["cpu_us_per_req"]})
    return {
        "reps": len(reps),
        "rps": _median([r["rps"] for r in reps]),
        "rps_min": min(r["rps"] for r in reps),
        "rps_max": max(r["rps"] for r in reps),
        "p50_us": _median([r["p50_us"] for r in reps if r["p50_us"] is not None]),
        "p99_us": _median([r["p99_us"] for r in reps if r["p99_us"] is not None]),
        "p50_us_min": min((r["p50_us"] for r in reps if r["p50_us"] is not None), default=None),
        "p50_us_max": max((r["p50_us"] for r in reps if r["p50_us"] is not None), default=None),
        "cpu_us_per_req": {
            role: _median([r["cpu_us_per_req"].get(role, 0.0) for r in reps]) for role in roles
        },
        "server_cpu_us_per_req": _median([r["server_cpu_us_per_req"] for r in reps]),
        "client_cpu_us_per_req": _median([r["client_cpu_us_per_req"] for r in reps]),
        "server_cores": _median([r["server_cores"] for r in reps]),
        "context_switches_per_req": _median([r["context_switches_per_req"] for r in reps]),
        "foreign_cores": [round(r["foreign_cores"], 3) for r in reps],
        "errors": sum(r["errors"] for r in reps),
        "per_process_cpu_us_per_req": {
            pid: _median([r["per_process_cpu_us_per_req"].get(pid, 0.0) for r in reps])
            for pid in sorted({p for r in reps for p in r["per_process_cpu_us_per_req"]})
        },
    }


def _n(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def print_table(
    summary: dict[str, dict[str, Any]], systems: list[str], reps: int, seconds: float, pin: str
) -> list[str]:
    placement = f"all processes pinned to CPU {pin}" if pin else "free placement"
    out = [
        f"State API, 100 B values, {placement}; median of {reps} rep(s) x "
        f"{seconds:g} s (p50/p99: median of the per-rep values). CPU in µs per request.",
        "",
        f"{'case':<13} {'system':<11} {'req/s':>7} {'(min-max)':<15} {'p50 µs':>8} {'p99 µs':>8}"
        f"  {'server CPU µs/req = parts':<50} {'client':>6} {'cs/req':>6}  foreign cores",
    ]
    for case in CASES:
        label = case_label(case)
        for index, system in enumerate(systems):
            s = summary.get(system, {}).get(label)
            if s is None:
                continue
            parts = " + ".join(
                f"{ROLE_SHORT.get(role, role)} {_n(s['cpu_us_per_req'][role])}"
                for role in ROLE_ORDER
                if role in s["cpu_us_per_req"]
            )
            server = f"{_n(s['server_cpu_us_per_req'])} = {parts}"
            spread = f"({_n(s['rps_min'])}-{_n(s['rps_max'])})"
            foreign = " ".join(f"{f:.2f}" for f in s["foreign_cores"])
            errors = f"  ERRORS {s['errors']}" if s["errors"] else ""
            out.append(
                f"{case_label(case, system) if index == 0 or system == 'redis' else '':<13} "
                f"{system:<11} {_n(s['rps']):>7} {spread:<15} {_n(s['p50_us']):>8} "
                f"{_n(s['p99_us']):>8}  {server:<50} {_n(s['client_cpu_us_per_req']):>6} "
                f"{_n(s['context_switches_per_req'], 1):>6}  {foreign}{errors}"
            )
        side = summary.get("sidecar", {}).get(label)
        base = summary.get("baseline", {}).get(label)
        ref = summary.get(AGAINST, {}).get(label)
        if side and ref:
            out.append(
                f"{'':<13} sidecar/sidecar@ref: req/s x{side['rps'] / ref['rps']:.2f}, "
                f"p50 x{side['p50_us'] / ref['p50_us']:.2f}, p99 x"
                f"{side['p99_us'] / ref['p99_us']:.2f}, server CPU x"
                f"{side['server_cpu_us_per_req'] / ref['server_cpu_us_per_req']:.2f}"
            )
        if side and base:
            out.append(
                f"{'':<13} sidecar/baseline: req/s x{side['rps'] / base['rps']:.2f}, "
                f"p50 x{side['p50_us'] / base['p50_us']:.2f}, p99 x"
                f"{side['p99_us'] / base['p99_us']:.2f}, server CPU x"
                f"{side['server_cpu_us_per_req'] / base['server_cpu_us_per_req']:.2f}"
            )
        out.append("")
    return out


def print_sidecar_processes(cases: dict[str, Any], names: dict[str, str]) -> list[str]:
    """Sidecar CPU per request by process (median over reps), redis-server included."""
    if not cases:
        return []

    def rank(pid: str) -> tuple[int, str]:
        name = names.get(pid, "?")
        first = {"supervisor": 0, "api": 1, "redis-server": 3}.get(name, 2)
        return first, name

    pids = sorted(
        {pid for s in cases.values() for pid in s["per_process_cpu_us_per_req"]}, key=rank
    )
    labels = [names.get(pid, pid).removeprefix("worker ") for pid in pids]
    width = max(10, *(len(label) for label in labels))
    out = [
        "Sidecar CPU by process, µs per request (median over reps)",
        f"  {'case':<13}" + "".join(f" {label:>{width}}" for label in labels),
    ]
    for label, s in cases.items():
        values = s["per_process_cpu_us_per_req"]
        out.append(f"  {label:<13}" + "".join(f" {_n(values.get(pid)):>{width}}" for pid in pids))
    out.append("")
    return out


def print_idle(idle: dict[str, dict[str, float]]) -> list[str]:
    if not idle:
        return []
    parts = []
    for name, roles in idle.items():
        own = {r: v for r, v in roles.items() if not (name != "redis" and r == "redis")}
        detail = ", ".join(f"{ROLE_SHORT.get(r, r)} {v:.1f}" for r, v in own.items())
        parts.append(f"{name} {sum(own.values()):.1f} ({detail})")
    return ["Idle CPU, no load, % of one core: " + "; ".join(parts), ""]


def print_startup_memory(startup: dict[str, Any], memory: dict[str, Any]) -> list[str]:
    out = []
    if startup:
        out.append(
            'Start-up: `layotto start` exec -> "layotto ready" log line '
            "(median of starts; min-max; the supervisor's own figure; SIGTERM -> exit)"
        )
        for name, s in startup.items():
            out.append(
                f"  {name:<16} {s['exec_to_ready_s_median']:.2f} s "
                f"({s['exec_to_ready_s_min']:.2f}-{s['exec_to_ready_s_max']:.2f}, "
                f"n={len(s['runs'])}); self-reported {s['reported_ready_s_median']:.2f} s; "
                f"{s['processes']} processes; stop {s['stop_s_median']:.2f} s"
            )
        out.append("")
    out.append(
        "Memory, MiB, summed over the processes (PSS shares pages with every other "
        "process; USS = private only)"
    )
    out.append(
        f"  {'what':<34} {'procs':>5} {'PSS start':>10} {'PSS load':>9} "
        f"{'USS start':>10} {'USS load':>9}"
    )
    for name, m in memory.items():
        start, after = m.get("after_start"), m.get("after_load")
        first = start or after
        assert first is not None
        out.append(
            f"  {name:<34} {first['processes']:>5} "
            f"{_n(start and start['pss_mib'], 1):>10} {_n(after and after['pss_mib'], 1):>9} "
            f"{_n(start and start['uss_mib'], 1):>10} {_n(after and after['uss_mib'], 1):>9}"
        )
    return out


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per rep")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per system and case")
    parser.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per rep")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 rep of 0.5 s, 1 start per config"
    )
    parser.add_argument("--starts", type=int, default=3, help="starts per config (start-up time)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of sidecar,baseline,redis",
    )
    parser.add_argument(
        "--noisy-threshold",
        type=float,
        default=0.25,
        help="a rep with more foreign cores than this is repeated",
    )
    parser.add_argument(
        "--noisy-retries",
        type=int,
        default=2,
        help="how often a noisy rep is repeated (the quietest attempt is kept)",
    )
    parser.add_argument(
        "--pin", default="", help="CPU list for every process, e.g. 0 (everything on one vCPU)"
    )
    parser.add_argument(
        "--skip-startup",
        action="store_true",
        help="skip the start-up and standalone memory measurements",
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after the reps, profile the API process and a state worker under GetState x16 "
        "(py-spy --gil, and perf if present) for this long",
    )
    parser.add_argument(
        "--against",
        default="",
        metavar="GIT_REF",
        help="also run the sidecar of this commit (system 'sidecar@ref'), interleaved with "
        "the others: the way to measure a code change on a noisy machine",
    )
    parser.add_argument("--out", default="", help="JSON file (default bench/results/...)")
    args = parser.parse_args()
    if args.quick:
        args.reps, args.seconds, args.starts = 1, 0.5, 1
    args.systems = [s for s in args.systems.split(",") if s]
    if args.against:
        args.systems.insert(
            args.systems.index("sidecar") + 1 if "sidecar" in args.systems else 0, AGAINST
        )
    unknown = set(args.systems) - {*SYSTEMS, AGAINST}
    if unknown:
        parser.error(f"unknown systems: {sorted(unknown)}")
    return args


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=BENCH.parent, capture_output=True, text=True, check=False
    ).stdout.rstrip("\n")  # not strip(): porcelain lines may start with a space


def code_version() -> dict[str, Any]:
    """Which code was measured: HEAD plus the files changed on top of it."""
    changed = [
        line[3:] for line in _git("status", "--porcelain", "--untracked-files=no").splitlines()
    ]
    return {"head": _git("log", "-1", "--format=%h %s")[:72], "uncommitted": changed}


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure_reps(
    args: argparse.Namespace,
    systems: list[System],
    load: Load,
    everyone: Callable[[], list[int]],
) -> list[dict[str, Any]]:
    """All reps, systems interleaved (rotated) per rep; a noisy rep is repeated."""
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for case in CASES:
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for system in order:
                attempts = []
                for _ in range(1 + args.noisy_retries):
                    result = measure(
                        system, case, load, everyone, warmup=args.warmup, seconds=args.seconds
                    )
                    attempts.append(result)
                    if result["foreign_cores"] <= args.noisy_threshold:
                        break
                best = min(attempts, key=lambda r: r["foreign_cores"])
                best.update(
                    {
                        "rep": rep + 1,
                        "attempts": len(attempts),
                        "noisy": best["foreign_cores"] > args.noisy_threshold,
                        "discarded_foreign_cores": [
                            a["foreign_cores"] for a in attempts if a is not best
                        ],
                    }
                )
                runs.append(best)
                flag = "  NOISY" if best["noisy"] else ""
                errors = (
                    f"  errors {best['errors']}: {best['first_error']}" if best["errors"] else ""
                )
                print(
                    f"  rep {rep + 1}/{args.reps} {case_label(case, system.name):<12} "
                    f"{system.name:<9} {best['rps']:>7,.0f} req/s  p50 "
                    f"{_n(best['p50_us']):>6} µs  p99 {_n(best['p99_us']):>6} µs  server "
                    f"{best['server_cpu_us_per_req']:>5,.0f} µs/req  foreign "
                    f"{best['foreign_cores']:.2f} (attempts {len(attempts)}){flag}{errors}",
                    flush=True,
                )
    return runs


class _Checkout:
    """A temporary checkout, removed with the processes at the end."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="layotto-ref-")

    def stop(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def start_against(ref: str, redis: RedisServer, procs: Processes) -> Sidecar:
    """The sidecar of commit ``ref``, on that commit's configs/redis.yaml."""
    print(f"starting the sidecar of {ref} on its configs/redis.yaml", flush=True)
    checkout = _Checkout()
    procs.add(f"checkout of {ref}", checkout)
    code, source = source_tree(ref, checkout.directory)
    other = Sidecar(
        os.path.join(source, "configs", "redis.yaml"), {"REDIS_ADDR": redis.address}, code
    )
    procs.add(AGAINST, other)
    other.start()
    return other


def run(args: argparse.Namespace, procs: Processes, report: dict[str, Any]) -> None:
    print("starting a private redis-server and the load generator", flush=True)
    redis = RedisServer()
    procs.add("redis-server", redis)
    load = Load()
    procs.add("load generator", load)
    baseline: Baseline | None = None
    sidecar: Sidecar | None = None
    other: Sidecar | None = None

    def everyone() -> list[int]:
        pids = [os.getpid(), load.pid, redis.pid]
        if baseline is not None:
            pids.append(baseline.pid)
        for side in (sidecar, other):
            if side is not None:
                pids += [side.pid, *side.children()]
        return pids

    memory: dict[str, Any] = report["memory"]
    if not args.skip_startup:
        print(f"start-up: {args.starts} start(s) per config", flush=True)
        report["startup"] = measure_startups(args.starts, redis, procs)
        print("memory, and a short load, on configs/standalone.yaml", flush=True)
        memory["sidecar standalone.yaml"] = standalone_memory(
            load, everyone, procs, min(1.0, args.seconds)
        )

    print("starting the sidecar on configs/redis.yaml and the baseline", flush=True)
    sidecar = Sidecar("configs/redis.yaml", {"REDIS_ADDR": redis.address})
    procs.add("sidecar redis.yaml", sidecar)
    sidecar.start()
    memory["sidecar redis.yaml"] = {"after_start": sidecar_memory(sidecar)}
    baseline = Baseline(redis.address)
    procs.add("baseline", baseline)
    memory["baseline (1 process)"] = {"after_start": memory_of([baseline.pid])}
    memory["redis-server"] = {"after_start": memory_of([redis.pid])}
    report["processes"] = {str(pid): name for pid, name in sidecar.names().items()}
    report["processes"][str(redis.pid)] = "redis-server"

    if args.against:
        other = start_against(args.against, redis, procs)
        report["against"] = {"ref": args.against, "commit": _git("rev-parse", args.against)}

    all_systems = {
        "sidecar": sidecar_system(sidecar, redis.pid),
        "baseline": System(
            "baseline",
            "grpc",
            baseline.target,
            lambda: {"baseline": [baseline.pid], "redis": [redis.pid]},
        ),
        "redis": System("redis", "redis", redis.address, lambda: {"redis": [redis.pid]}),
    }
    if other is not None:
        all_systems[AGAINST] = sidecar_system(other, redis.pid, AGAINST)
    systems = [all_systems[name] for name in args.systems]
    idle_seconds = max(2.0, args.seconds)
    print(f"idle CPU over {idle_seconds:g} s", flush=True)
    report["idle_pct_of_core"] = measure_idle(all_systems, idle_seconds)
    runs: list[dict[str, Any]] = report["runs"]
    print(
        f"measuring: {args.reps} rep(s) x {args.seconds:g} s (+{args.warmup:g} s warm-up), "
        f"systems interleaved per rep",
        flush=True,
    )
    runs += measure_reps(args, systems, load, everyone)
    memory["sidecar redis.yaml"]["after_load"] = sidecar_memory(sidecar)
    memory["baseline (1 process)"]["after_load"] = memory_of([baseline.pid])
    memory["redis-server"]["after_load"] = memory_of([redis.pid])
    if args.profile > 0:
        report["profile"] = run_profile(sidecar, load, args.profile, args.profile_dir)


def run_profile(sidecar: Sidecar, load: Load, seconds: float, out_dir: Path) -> dict[str, Any]:
    print(
        f"profiling the API process and state_demo#0 under GetState x16 ({seconds:g} s each "
        "for py-spy and perf)",
        flush=True,
    )
    names = {name: pid for pid, name in sidecar.names().items()}
    api = next(pid for name, pid in names.items() if name.startswith("api"))  # "api gen 1"
    targets = {"api": api, "state-worker": names["worker state_demo#0"]}
    answer = load.ask(
        {
            "cmd": "start",
            "kind": "grpc",
            "target": sidecar.target,
            "store": STORE,
            "key_prefix": "profile",
            "op": "get",
            "callers": 16,
        }
    )
    if not answer.get("ok"):
        raise RuntimeError(f"profile load: {answer.get('error')}")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        time.sleep(0.5)
        results = _profile.profile(targets, seconds, out_dir)
    finally:
        now = time.monotonic_ns()
        stats = load.ask({"cmd": "stop", "t0": now - 10**9, "t1": now})
    results["load_last_second"] = {k: stats[k] for k in ("rps", "p50_us", "errors")}
    return results


def measure_idle(systems: dict[str, System], seconds: float) -> dict[str, dict[str, float]]:
    """CPU the servers burn with no load at all, in % of one core, by role."""
    groups = {name: system.groups() for name, system in systems.items()}
    pids = {pid for roles in groups.values() for ps in roles.values() for pid in ps}
    before = {pid: _procfs.cpu_ticks(pid) or 0 for pid in pids}
    began = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - began
    after = {pid: _procfs.cpu_ticks(pid) or 0 for pid in pids}
    return {
        name: {
            role: sum(after[p] - before[p] for p in ps) / _procfs.HZ / wall * 100
            for role, ps in roles.items()
        }
        for name, roles in groups.items()
    }


def main() -> int:
    args = parse_args()
    if args.pin:
        cpus = {int(c) for c in args.pin.split(",")}
        os.sched_setaffinity(0, cpus)  # inherited by every process we start
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    started = dt.datetime.now().astimezone()
    report: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "args": dict(vars(args)),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        },
        "code": code_version(),
        "startup": {},
        "memory": {},
        "runs": [],
    }
    args.profile_dir = BENCH / "results" / f"profile-{started:%Y%m%d-%H%M%S}"
    procs = Processes()
    try:
        run(args, procs, report)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the bench started", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    summary: dict[str, dict[str, Any]] = {}
    for system in args.systems:
        for case in CASES:
            reps = [
                r for r in report["runs"] if r["system"] == system and r["case"] == case_label(case)
            ]
            if reps:
                summary.setdefault(system, {})[case_label(case)] = summarise(reps)
    report["summary"] = summary
    out = (
        Path(args.out)
        if args.out
        else (BENCH / "results" / f"state_bench-{started:%Y%m%d-%H%M%S}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))  # before anything can fail
    code = report["code"]
    lines = [
        "",
        f"{started:%Y-%m-%d %H:%M %Z}; code: {code['head']}"
        + (f" + uncommitted {', '.join(code['uncommitted'])}" if code["uncommitted"] else ""),
        *print_table(summary, args.systems, args.reps, args.seconds, args.pin),
        *print_sidecar_processes(summary.get("sidecar", {}), report.get("processes", {})),
        *print_idle(report.get("idle_pct_of_core", {})),
        *print_startup_memory(report["startup"], report["memory"]),
        *(_profile.report_lines(report["profile"]) if "profile" in report else []),
    ]
    print("\n".join(lines))
    report["table"] = lines
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
