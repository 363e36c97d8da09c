"""Optional profiling for state_bench.py --profile: where the API process spends its time.

While the load generator keeps GetState x16 running against the sidecar:

* ``py-spy record --gil --nonblocking -f raw`` on the API process and on one
  state worker: samples of the thread holding the GIL, i.e. Python-level CPU.
  (Without --gil py-spy also counts runnable threads waiting for a CPU, and
  --native pauses the process so much that throughput collapses.)
* ``perf record -g`` on the same processes, if perf is installed and allowed:
  the CPU split by shared object (kernel, libpython, grpc's C core, nng, libc).

Raw outputs go next to the JSON in bench/results/.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PY_SPY = Path(sys.executable).parent / "py-spy"


def summarise_collapsed(path: Path, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of functions in py-spy's raw (collapsed) output."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    share = 100 / total if total else 0.0
    return {
        "samples": total,
        "self": [(round(c * share, 1), f) for f, c in own.most_common(top)],
        "inclusive": [
            (round(c * share, 1), f)
            for f, c in inclusive.most_common(top + 5)
            if not f.startswith(("Thread.", "_run_", "<module>"))
        ][:top],
    }


def perf_by_dso(data: Path) -> list[tuple[float, str]]:
    out = subprocess.run(
        [
            "perf",
            "report",
            "-i",
            str(data),
            "--no-children",
            "--sort",
            "dso",
            "--stdio",
            "-g",
            "none",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%"):
            rows.append((float(parts[0][:-1]), parts[1]))
    return rows[:8]


def profile(targets: dict[str, int], seconds: float, out_dir: Path) -> dict[str, Any]:
    """Profile each {label: pid} for ``seconds``; the load must already be running."""
    results: dict[str, Any] = {}
    if not PY_SPY.exists():
        return {"error": f"{PY_SPY} not found: .venv/bin/pip install py-spy"}
    spies = {
        label: subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--pid",
                str(pid),
                "--gil",
                "--nonblocking",
                "-f",
                "raw",
                "-d",
                str(max(1, round(seconds))),
                "-o",
                str(out_dir / f"py-spy-{label}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for label, pid in targets.items()
    }
    for label, spy in spies.items():
        _, err = spy.communicate(timeout=seconds + 60)
        path = out_dir / f"py-spy-{label}.txt"
        results[label] = (
            summarise_collapsed(path) if path.exists() else {"error": err.strip()[-300:]}
        )
    if shutil.which("perf"):
        perfs = {
            label: subprocess.Popen(
                [
                    "perf",
                    "record",
                    "-F",
                    "499",
                    "-g",
                    "-p",
                    str(pid),
                    "-o",
                    str(out_dir / f"perf-{label}.data"),
                    "--",
                    "sleep",
                    str(seconds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for label, pid in targets.items()
        }
        for label, perf in perfs.items():
            perf.wait(timeout=seconds + 60)
            data = out_dir / f"perf-{label}.data"
            if data.exists():
                results[label]["perf_by_dso"] = perf_by_dso(data)
    return results


def report_lines(results: dict[str, Any]) -> list[str]:
    out = [
        "Profile under GetState x16 on the sidecar (py-spy --gil: share of GIL-holding "
        "samples; perf: share of CPU samples by shared object)"
    ]
    for label, r in results.items():
        if not isinstance(r, dict) or "samples" not in r:
            out.append(f"  {label}: {r}")
            continue
        out.append(f"  {label}: {r['samples']} GIL samples")
        if r.get("perf_by_dso"):
            out.append(
                "    perf by object: "
                + ", ".join(
                    f"{name.removesuffix('.so').split('.cpython')[0]} {pct:.0f}%"
                    for pct, name in r["perf_by_dso"]
                    if pct >= 0.5
                )
            )
        out.append("    self:      " + "; ".join(f"{p}% {f}" for p, f in r["self"][:10]))
        out.append("    inclusive: " + "; ".join(f"{p}% {f}" for p, f in r["inclusive"][:10]))
    return out
