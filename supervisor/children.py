"""A child process of the supervisor, as the supervisor sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layotto.boundary.config import ComponentConfig
from layotto.boundary.specs import ChildSpec
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.launcher import ChildProcess

_DOWN = (lc.State.STOPPED, lc.State.FATAL)


@dataclass
class Child:
    id: str
    role: str  # "api" | "worker" | "zygote"
    generation: int
    spec: ChildSpec
    proc: lc.Proc
    component: ComponentConfig | None = None
    address: str = ""
    process: ChildProcess | None = None  # while it runs (set and cleared by the loop)
    forked_from: str = ""  # for workers and the API: the zygote to fork from
    health: str = "UNKNOWN"
    health_reason: str = ""
    fatal_reason: str = ""

    @property
    def up(self) -> bool:
        return self.proc.state == lc.State.RUNNING

    @property
    def down(self) -> bool:
        return self.proc.state in _DOWN

    @property
    def healthy(self) -> bool:
        return self.up and self.health == "UP"

    def reason(self) -> str:
        return self.fatal_reason or self.proc.reason or self.health_reason

    def row(self, now: float, requests: int | None) -> dict[str, Any]:
        uptime = now - self.proc.ready_at if self.proc.ready_at is not None else None
        return {
            "name": self.id,
            "role": self.role
            if self.component is None
            else f"{self.component.kind}/{self.component.type}",
            "component": self.component.name if self.component else "",
            "generation": self.generation,
            "pid": self.proc.pid,
            "state": self.proc.state.value,
            "restarts": self.proc.restarts,
            "uptime": uptime,
            "health": self.health,
            "requests": requests,
            "reason": self.reason(),
        }
