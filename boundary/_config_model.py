"""The typed, frozen shape of a layotto config, its errors, and its JSON form.

Apart from the parsing because the rest of the code only ever reads these
objects; child processes rebuild them from JSON with no validation to redo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

V = TypeVar("V")

# Not $TMPDIR: the CLI must find a sidecar from any shell, whatever its environment.
RUN_DIR_BASE = "/tmp"


def default_run_dir(config_path: str) -> str:
    """Where the CLI finds the sidecar started from `config_path`.

    Keyed by user and the file's absolute path only: neither the environment
    (ports given as ${VAR}) nor what the file says now can move it, so `stop`
    and `status` reach a sidecar whose file was since edited, broken or
    deleted. It is the run directory unless `runtime.run_dir` names another;
    the sidecar then keeps its pid file and a link to its control socket here.
    """
    key = os.path.abspath(config_path)
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{RUN_DIR_BASE}/layotto-{os.getuid()}-{digest}"


class FrozenMap(Mapping[str, V]):
    """A read-only, hashable mapping: a frozen dataclass holding a dict is
    neither immutable nor hashable, and configs are compared and diffed."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, V] | None = None) -> None:
        self._data: dict[str, V] = dict(items or {})

    def __getitem__(self, key: str) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        # An IPv6 host needs brackets, or its colons would swallow the port.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class AppConfig:
    app_id: str = ""
    grpc_callback_port: int = 9999
    grpc_callback_host: str = "127.0.0.1"


@dataclass(frozen=True)
class Listeners:
    grpc: Address
    http: Address


# gRPC's default limit on a received message (its send limit defaults to none):
# what a subscriber with default settings can take.
GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024
DEFAULT_MAX_EVENT_SIZE = GRPC_DEFAULT_MAX_RECEIVE


@dataclass(frozen=True)
class RuntimeConfig:
    run_dir: str | None = None  # control socket, pid file, ipc sockets; None: Config.run_dir()
    request_timeout: float = 5.0  # deadline of a call that carries no gRPC deadline
    shutdown_grace: float = 10.0  # time in-flight calls get on stop
    start_timeout: float = 20.0  # time a child may take to report ready
    max_connection_age: float = 5.0  # gRPC GOAWAY age: a hot upgrade drains in about this long
    log_level: str = "INFO"
    # Open HTTP connections the supervisor serves at once (actuator and /ws
    # relays): well below the descriptor limit, which the supervisor needs too.
    max_http_connections: int = 1024
    # Bytes. The API's gRPC server: largest request it accepts, largest
    # message it sends (None: no limit, gRPC's default).
    max_receive_message_size: int = GRPC_DEFAULT_MAX_RECEIVE
    max_send_message_size: int | None = None
    # Largest gRPC message delivering one pub/sub event may take: publish
    # refuses an event that would not fit in a subscriber's receive limit.
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE
    # Open subscription streams (gRPC) and WebSocket connections the API process
    # serves at once; one more is refused (RESOURCE_EXHAUSTED, HTTP 503).
    max_streams: int = 512
    max_websocket_connections: int = 512
    # API processes per generation, all on the gRPC port (SO_REUSEPORT): one
    # serves, the others stand by, so a dead one's port never refuses anyone.
    api_processes: int = 2


@dataclass(frozen=True)
class SecretRef:
    """One entry of a component's `secret_ref` (Layotto's shape): the value
    `sub_key` of secret `key` in secret store `name` becomes metadata key
    `inject_as` of the component's workers."""

    name: str
    key: str
    sub_key: str  # "" stands for `key` itself (a single-valued secret's only value)
    inject_as: str


@dataclass(frozen=True)
class ComponentConfig:
    kind: str
    name: str
    type: str
    metadata: Mapping[str, str]
    workers: int = 1
    hello: str | None = None  # kind hellos only (Layotto's `hello`)
    bigger_than: Mapping[str, int] = FrozenMap[int]()  # kind sequencer only (`biggerThan`)
    secret_refs: tuple[SecretRef, ...] = ()
    # The values the refs name, by `inject_as`, read by the supervisor at load.
    # Never shown (not in repr, nor in the JSON the API processes get); only
    # `worker_metadata` hands them on, to the worker's spec on its control link.
    # Compared: a rotated secret makes a reload restart the component.
    secrets: Mapping[str, str] = dataclasses.field(default=FrozenMap[str](), repr=False)

    def __post_init__(self) -> None:
        # Callers may pass plain dicts; store read-only copies so "frozen" holds.
        object.__setattr__(self, "metadata", FrozenMap(self.metadata))
        object.__setattr__(self, "bigger_than", FrozenMap(self.bigger_than))
        object.__setattr__(self, "secret_refs", tuple(self.secret_refs))
        object.__setattr__(self, "secrets", FrozenMap(self.secrets))

    def worker_metadata(self) -> Mapping[str, str]:
        """The metadata its workers get: the config's, with the secrets injected."""
        return FrozenMap({**self.metadata, **self.secrets})


@dataclass(frozen=True)
class Config:
    source: str  # the file path as given, for messages
    app: AppConfig
    listeners: Listeners
    runtime: RuntimeConfig
    components: tuple[ComponentConfig, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))

    def of_kind(self, kind: str) -> tuple[ComponentConfig, ...]:
        return tuple(c for c in self.components if c.kind == kind)

    def component(self, name: str) -> ComponentConfig | None:
        # Names are unique across kinds (validated), so the first match is the only one.
        return next((c for c in self.components if c.name == name), None)

    def run_dir(self) -> str:
        """The directory of the control socket, pid file and ipc sockets:
        `runtime.run_dir`, by default `default_run_dir(source)` (one sidecar
        per config file)."""
        if self.runtime.run_dir is not None:
            return self.runtime.run_dir
        return default_run_dir(self.source)

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict; `Config.from_json` rebuilds an equal Config, but
        for the values of `secret_ref` (`secrets`), which stay out of it."""
        return {
            "source": self.source,
            "app": {
                "app_id": self.app.app_id,
                "grpc_callback_port": self.app.grpc_callback_port,
                "grpc_callback_host": self.app.grpc_callback_host,
            },
            "listeners": {
                "grpc": {"host": self.listeners.grpc.host, "port": self.listeners.grpc.port},
                "http": {"host": self.listeners.http.host, "port": self.listeners.http.port},
            },
            "runtime": dataclasses.asdict(self.runtime),
            "components": [
                {
                    "kind": c.kind,
                    "name": c.name,
                    "type": c.type,
                    "metadata": dict(c.metadata),
                    "workers": c.workers,
                    "hello": c.hello,
                    "bigger_than": dict(c.bigger_than),
                    "secret_refs": [dataclasses.asdict(r) for r in c.secret_refs],
                    # not `secrets`: their values stay in the supervisor and the workers
                }
                for c in self.components
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Config:
        """The inverse of `to_json`. It trusts its input (the supervisor
        validated the YAML); it is not a second validator."""
        listeners = data["listeners"]
        return cls(
            source=data["source"],
            app=AppConfig(**data["app"]),
            listeners=Listeners(
                grpc=Address(**listeners["grpc"]), http=Address(**listeners["http"])
            ),
            runtime=RuntimeConfig(**data["runtime"]),
            components=tuple(
                ComponentConfig(
                    **{**c, "secret_refs": tuple(SecretRef(**r) for r in c["secret_refs"])}
                )
                for c in data["components"]
            ),
        )


@dataclass(frozen=True)
class Problem:
    key_path: str  # dotted, e.g. "state.state_demo.workers"; "" for the file as a whole
    expected: str
    found: str

    def message(self, source: str) -> str:
        where = f"{source}: {self.key_path}" if self.key_path else source
        return f"{where}: expected {self.expected}, found {self.found}"


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem found, not just the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        super().__init__(source, list(problems))
        self.source = source
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(p.message(self.source) for p in self.problems)
