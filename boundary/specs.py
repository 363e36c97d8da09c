"""What the supervisor tells each child it starts: one frozen spec per role.

The supervisor builds a spec, sends it as JSON (``to_json``), and the child
rebuilds the same object (``spec_from_json``); nothing else about a child's
job crosses the process boundary. ``module`` names the role's entry module,
which the zygote forks into (or the supervisor execs) and whose
``run(spec, link)`` returns the exit status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from layotto.boundary._config_model import DEFAULT_MAX_EVENT_SIZE, Config, FrozenMap


@dataclass(frozen=True)
class WorkerSpec:
    """One replica of one component."""

    role: ClassVar[str] = "worker"
    module: ClassVar[str] = "layotto.workers.main"

    kind: str
    name: str
    type: str
    metadata: Mapping[str, str]
    app_id: str
    slot: int
    address: str  # the worker's data socket (ipc://...); also names its pub/sub consumer
    log_level: str = "INFO"
    hello: str | None = None  # kind hellos only
    bigger_than: Mapping[str, int] = field(default_factory=FrozenMap[int])  # kind sequencer
    app_callback: str | None = None  # "host:port" of the app's AppCallback server
    # A file for what must outlive the worker process (addresses.state_file);
    # only component types that declare it use it (registry.ComponentType).
    state_file: str | None = None
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE  # kind pub_subs: runtime.max_event_size

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", FrozenMap(self.metadata))
        object.__setattr__(self, "bigger_than", FrozenMap(self.bigger_than))

    @property
    def label(self) -> str:
        return f"worker {self.name}#{self.slot}"

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["metadata"] = dict(self.metadata)
        data["bigger_than"] = dict(self.bigger_than)
        return {"role": self.role, **data}


@dataclass(frozen=True)
class ApiSpec:
    """One of a generation's API processes, and the workers it routes each component to."""

    role: ClassVar[str] = "api"
    module: ClassVar[str] = "layotto.api.main"

    config: Config
    run_dir: str
    generation: int
    workers: Mapping[str, Sequence[str]]  # component -> worker addresses (kept as tuples)
    index: int = 0  # which of its generation's API processes (names its WebSocket socket)
    # The reuseport group member new connections go to, attached once it
    # listens: 0 normally; during a hot upgrade's drain, the first new member
    # (docs/design.md, "Hot upgrade"), so a restarted API never undoes it.
    steer_to: int = 0

    def __post_init__(self) -> None:
        routes = {name: tuple(addresses) for name, addresses in self.workers.items()}
        object.__setattr__(self, "workers", FrozenMap(routes))

    @property
    def log_level(self) -> str:
        return self.config.runtime.log_level

    @property
    def label(self) -> str:
        return f"api gen {self.generation} #{self.index}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "config": self.config.to_json(),
            "run_dir": self.run_dir,
            "generation": self.generation,
            "workers": {name: list(addresses) for name, addresses in self.workers.items()},
            "index": self.index,
            "steer_to": self.steer_to,
        }


@dataclass(frozen=True)
class ZygoteSpec:
    """A generation's zygote: what to import before it forks anyone."""

    role: ClassVar[str] = "zygote"
    module: ClassVar[str] = "layotto.workers.zygote"

    generation: int
    log_level: str = "INFO"
    # backends to preload, as (kind, type): those its generation's workers run
    types: tuple[tuple[str, str], ...] = ()
    # role modules its children run (imported before forking, so shared)
    roles: tuple[str, ...] = (WorkerSpec.module, ApiSpec.module)

    def __post_init__(self) -> None:
        object.__setattr__(self, "types", tuple(tuple(t) for t in self.types))
        object.__setattr__(self, "roles", tuple(self.roles))

    @property
    def label(self) -> str:
        return f"zygote gen {self.generation}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "generation": self.generation,
            "log_level": self.log_level,
            "types": [list(t) for t in self.types],
            "roles": list(self.roles),
        }


ChildSpec = WorkerSpec | ApiSpec | ZygoteSpec


def spec_from_json(data: Mapping[str, Any]) -> ChildSpec:
    """The inverse of each spec's ``to_json``; trusts its input (the supervisor made it)."""
    body = {k: v for k, v in data.items() if k != "role"}
    role = data["role"]
    if role == WorkerSpec.role:
        return WorkerSpec(**body)
    if role == ApiSpec.role:
        body["config"] = Config.from_json(body["config"])
        return ApiSpec(**body)
    if role == ZygoteSpec.role:
        return ZygoteSpec(**body)
    raise ValueError(f"unknown child role {role!r}")
