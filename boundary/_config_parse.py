"""Parsed YAML to a validated `Config`, collecting every problem on the way.

Each value is checked where it sits, against the schema and the component
registry; a bad value is reported and the walk goes on, so one run of
`layotto check` lists everything that is wrong with a file. Component metadata
values go through the registry's readers, the parsers the workers use, so a
value a worker would refuse at start is refused here first.
"""

from __future__ import annotations

import datetime
import difflib
import math
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from layotto.components import registry
from layotto.components.errors import MetadataError
from layotto.components.metadata import Read

from ._config_env import substitute
from ._config_model import (
    Address,
    AppConfig,
    ComponentConfig,
    Config,
    ConfigError,
    Listeners,
    Problem,
    RuntimeConfig,
    SecretRef,
)
from ._config_secrets import resolve

_TOP = ("app", "listeners", "runtime", *registry.KINDS)
_APP = ("app_id", "grpc_callback_port", "grpc_callback_host")
_LISTENERS = ("grpc", "http")
_RUNTIME = (
    "run_dir",
    "request_timeout",
    "shutdown_grace",
    "start_timeout",
    "max_connection_age",
    "log_level",
    "max_http_connections",
    "max_receive_message_size",
    "max_send_message_size",
    "max_event_size",
    "max_streams",
    "max_websocket_connections",
    "api_processes",
)
_MAX_OPEN = 100_000  # a limit on open streams or connections: each costs a thread
_COMPONENT = ("type", "metadata", "workers", "secret_ref")
_SECRET_REF = ("name", "key", "sub_key", "inject_as")
_KIND_EXTRA = {"hellos": ("hello",), "sequencer": ("biggerThan",)}
# Kinds whose requests name no component: their one component answers every call.
_ONE_COMPONENT = {"rpcs": "InvokeService names a service id, not a component"}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ADDRESS = re.compile(
    r"\[(?P<v6>[^\[\]\s]+)\]:(?P<v6port>[0-9]+)|(?P<host>[^:\[\]\s]+):(?P<port>[0-9]+)"
)
_ADDRESS_TEXT = "'host:port' (or '[ipv6]:port') with a port in 1..65535"
_SIZE = re.compile(r"([0-9]+)\s*(B|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE_MIN, _SIZE_MAX = 1024, 2**31 - 1  # gRPC takes these limits as a C int
_SIZE_TEXT = "a size in bytes from 1024 to 2147483647 (a number, or like '4MiB', '512KiB')"
_MISSING = "nothing (the key is missing)"


def _or_empty(value: Any) -> Any:
    # A section whose entries are all commented out parses as null: treat it as empty.
    return {} if value is None else value


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value} (a {type(value).__name__})"


class _Walker:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[Problem] = []
        self.base_dir = ""  # the config file's directory: relative file paths start there

    def fail(self, path: str, expected: str, found: str) -> None:
        self.problems.append(Problem(path, expected, found))

    def mapping(
        self,
        value: Any,
        path: str,
        allowed: Collection[str],
        *,
        required: Collection[str] = (),
        expected: str | None = None,
        unknown: str | None = None,
    ) -> dict[str, Any] | None:
        """The known string keys of a mapping; reports anything else at `path`."""
        listing = ", ".join(allowed)
        if not isinstance(value, dict):
            self.fail(path, expected or f"a mapping with keys {listing}", _describe(value))
            return None
        known: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.fail(_join(path, key), "a string key (quote it)", _describe(key))
            elif key in allowed:
                known[key] = item
            else:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                what = unknown or (f"one of the keys {listing}" if allowed else "no keys")
                self.fail(_join(path, key), what, f"unknown key '{key}'{hint}")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), f"the required key '{key}'", _MISSING)
        return known

    def text(self, value: Any, path: str, expected: str = "a string") -> str | None:
        if not isinstance(value, str):
            if isinstance(value, int | float) and expected == "a string":
                expected = "a string (quote the value to make it one)"
            self.fail(path, expected, _describe(value))
            return None
        result, problems = substitute(value, self.environ)
        for p in problems:
            self.fail(path, p.expected, p.found)
        return None if problems else result

    def found(self, raw: Any, text: str) -> str:
        """How to show a bad value: after substitution, and its source if different."""
        shown = _describe(text)
        return f"{shown} (from {_describe(raw)})" if raw != text else shown

    def scalar(self, value: Any, path: str) -> str | None:
        """A metadata value: Layotto's metadata is string-to-string, so coerce scalars."""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, datetime.date):
            return value.isoformat()
        return self.text(value, path, "a scalar (string, number or boolean)")

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> int | None:
        expected = f"an integer in {low}..{high}" if high is not None else f"an integer >= {low}"
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(path, expected, _describe(value))
            return None
        if isinstance(value, str):
            if (text := self.text(value, path)) is None:
                return None
            if not _INT.fullmatch(text.strip()):
                self.fail(path, expected, self.found(value, text))
                return None
            number, shown = int(text), self.found(value, text)
        else:
            number, shown = value, str(value)
        if number < low or (high is not None and number > high):
            self.fail(path, expected, shown)
            return None
        return number

    def seconds(self, value: Any, path: str) -> float | None:
        expected = "a number of seconds > 0"
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.fail(path, expected, _describe(value))
            return None
        if isinstance(value, str):
            if (text := self.text(value, path)) is None:
                return None
            if not _FLOAT.fullmatch(text.strip()):
                self.fail(path, expected, self.found(value, text))
                return None
            number, shown = float(text), self.found(value, text)
        else:
            number, shown = float(value), _describe(value)
        if not (math.isfinite(number) and number > 0):
            self.fail(path, expected, shown)
            return None
        return number

    def size(self, value: Any, path: str) -> int | None:
        """A number of bytes: an integer, or a string with a unit (B, KiB, MiB, GiB)."""
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(path, _SIZE_TEXT, _describe(value))
            return None
        if isinstance(value, int):
            number, shown = value, str(value)
        else:
            if (text := self.text(value, path)) is None:
                return None
            m = _SIZE.fullmatch(text.strip())
            if m is None:
                self.fail(path, _SIZE_TEXT, self.found(value, text))
                return None
            number, shown = int(m[1]) * _SIZE_UNITS[m[2]], self.found(value, text)
        if not _SIZE_MIN <= number <= _SIZE_MAX:
            self.fail(path, _SIZE_TEXT, shown)
            return None
        return number

    def address(self, value: Any, path: str) -> Address | None:
        if (text := self.text(value, path, f"a string {_ADDRESS_TEXT}")) is None:
            return None
        m = _ADDRESS.fullmatch(text)
        port = int(m["v6port"] or m["port"]) if m else 0
        if m is None or not 1 <= port <= 65535:
            self.fail(path, _ADDRESS_TEXT, self.found(value, text))
            return None
        return Address(m["v6"] or m["host"], port)

    # -- sections ---------------------------------------------------------------------------

    def config(self, doc: Any, source: str) -> Config | None:
        if doc is None:
            self.fail("", f"a mapping with keys {', '.join(_TOP)}", "an empty document")
            return None
        self.base_dir = os.path.dirname(os.path.abspath(source))
        top = self.mapping(doc, "", _TOP, required=("listeners",))
        if top is None:
            return None
        app = self.app(_or_empty(top.get("app")))
        listeners = self.listeners(top["listeners"]) if "listeners" in top else None
        runtime = self.runtime(_or_empty(top.get("runtime")))
        components = self.components(top)
        if self.problems:
            return None
        components = resolve(components, self.fail)  # read only from a valid file
        if self.problems:
            return None
        assert app is not None and listeners is not None and runtime is not None
        return Config(source, app, listeners, runtime, tuple(components))

    def app(self, value: Any) -> AppConfig | None:
        body = self.mapping(value, "app", _APP)
        if body is None:
            return None
        before = len(self.problems)
        app_id = self.text(body.get("app_id", ""), "app.app_id")
        port = self.integer(
            body.get("grpc_callback_port", 9999), "app.grpc_callback_port", 0, 65535
        )
        host = self.text(body.get("grpc_callback_host", "127.0.0.1"), "app.grpc_callback_host")
        if host == "":
            self.fail("app.grpc_callback_host", "a non-empty host", "''")
        if len(self.problems) > before or app_id is None or port is None or host is None:
            return None
        return AppConfig(app_id, port, host)

    def listeners(self, value: Any) -> Listeners | None:
        body = self.mapping(value, "listeners", _LISTENERS, required=_LISTENERS)
        if body is None:
            return None
        grpc = self.address(body["grpc"], "listeners.grpc") if "grpc" in body else None
        http = self.address(body["http"], "listeners.http") if "http" in body else None
        if grpc is None or http is None:
            return None
        if grpc.port == http.port:
            # Not only equal addresses collide: 0.0.0.0:N and 127.0.0.1:N do too.
            self.fail(
                "listeners.http",
                f"a port other than the gRPC listener's ({grpc}): each listener binds its own",
                str(http),
            )
            return None
        return Listeners(grpc, http)

    def runtime(self, value: Any) -> RuntimeConfig | None:
        body = self.mapping(value, "runtime", _RUNTIME)
        if body is None:
            return None
        before = len(self.problems)
        run_dir = None
        if body.get("run_dir") is not None:
            run_dir = self.text(body["run_dir"], "runtime.run_dir")
            if run_dir is not None:
                run_dir = os.path.expanduser(run_dir)
                if not os.path.isabs(run_dir):
                    # A relative path would resolve against whichever cwd each process has.
                    self.fail(
                        "runtime.run_dir", "an absolute path", self.found(body["run_dir"], run_dir)
                    )
        default = RuntimeConfig()
        times = [
            self.seconds(body[key], f"runtime.{key}") if key in body else getattr(default, key)
            for key in _RUNTIME[1:5]
        ]
        level = self.text(body.get("log_level", default.log_level), "runtime.log_level")
        if level is not None and level.upper() not in _LOG_LEVELS:
            self.fail("runtime.log_level", f"one of {', '.join(_LOG_LEVELS)}", _describe(level))
        http_connections = self.integer(
            body.get("max_http_connections", default.max_http_connections),
            "runtime.max_http_connections",
            16,
            65536,
        )
        limits = [
            self.integer(body[key], f"runtime.{key}", 1, _MAX_OPEN)
            if key in body
            else getattr(default, key)
            for key in ("max_streams", "max_websocket_connections")
        ]
        api_processes = self.integer(
            body.get("api_processes", default.api_processes), "runtime.api_processes", 1, 8
        )
        known = [t for t in times if t is not None]
        receive = self.size(
            body.get("max_receive_message_size", default.max_receive_message_size),
            "runtime.max_receive_message_size",
        )
        send = None  # null or absent: no limit
        if body.get("max_send_message_size") is not None:
            send = self.size(body["max_send_message_size"], "runtime.max_send_message_size")
        event = self.size(
            body.get("max_event_size", default.max_event_size), "runtime.max_event_size"
        )
        if send is not None and event is not None and send < event:
            # Streams carry events from the API process to subscribers.
            self.fail(
                "runtime.max_send_message_size",
                f"at least runtime.max_event_size ({event}): subscription streams send events",
                str(send),
            )
        if (
            len(self.problems) > before
            or level is None
            or http_connections is None
            or api_processes is None
            or len(known) != len(times)
            or receive is None
            or event is None
            or None in limits
        ):
            return None
        max_streams, max_websocket_connections = (n for n in limits if n is not None)
        request_timeout, shutdown_grace, start_timeout, max_connection_age = known
        return RuntimeConfig(
            run_dir=run_dir,
            request_timeout=request_timeout,
            shutdown_grace=shutdown_grace,
            start_timeout=start_timeout,
            max_connection_age=max_connection_age,
            log_level=level.upper(),
            max_http_connections=http_connections,
            max_receive_message_size=receive,
            max_send_message_size=send,
            max_event_size=event,
            max_streams=max_streams,
            max_websocket_connections=max_websocket_connections,
            api_processes=api_processes,
        )

    def components(self, top: Mapping[str, Any]) -> list[ComponentConfig]:
        built: list[ComponentConfig] = []
        where: dict[str, str] = {}  # name -> path of its first definition
        for kind in registry.KINDS:
            section = top.get(kind)
            if section is None:
                continue  # absent, or every entry commented out
            if not isinstance(section, dict):
                self.fail(kind, "a mapping of component name to its settings", _describe(section))
                continue
            if kind in _ONE_COMPONENT and len(section) > 1:
                self.fail(
                    kind,
                    f"one component ({_ONE_COMPONENT[kind]})",
                    f"{len(section)}: {', '.join(map(str, section))}",
                )
            for name, entry in section.items():
                path = _join(kind, name)
                if not isinstance(name, str) or not _COMPONENT_NAME.fullmatch(name):
                    self.fail(path, "a component name of letters, digits, _ . -", _describe(name))
                    continue
                if name in where:
                    # Status and scale commands address a component by its bare name.
                    self.fail(
                        path,
                        f"a name unique across all kinds (already used at {where[name]})",
                        repr(name),
                    )
                where.setdefault(name, path)
                component = self.component(kind, name, entry, path)
                if component is not None:
                    built.append(component)
        if not where:
            self.fail(
                "",
                f"at least one component (under {', '.join(registry.KINDS)})",
                "none",
            )
        return built

    def component(self, kind: str, name: str, entry: Any, path: str) -> ComponentConfig | None:
        allowed = _COMPONENT + _KIND_EXTRA.get(kind, ())
        body = self.mapping(entry, path, allowed, required=("type",))
        if body is None:
            return None
        before = len(self.problems)
        types = registry.types_of(kind)
        type_ = self.text(body["type"], f"{path}.type") if "type" in body else None
        if type_ is not None and type_ not in types:
            self.fail(f"{path}.type", f"one of the {kind} types {', '.join(types)}", repr(type_))
        spec = registry.TYPES.get((kind, type_ or ""))
        given = _or_empty(body.get("metadata"))
        refs = self.secret_refs(body.get("secret_ref"), f"{path}.secret_ref", spec, given)
        injected = {r.inject_as for r in refs}
        metadata = self.metadata(given, f"{path}.metadata", spec, name, injected)
        for key in spec.paths if spec is not None else ():
            if metadata.get(key):
                metadata[key] = os.path.join(self.base_dir, os.path.expanduser(metadata[key]))
        workers = self.integer(body.get("workers", 1), f"{path}.workers", 1)
        if spec is not None and spec.single_process and workers is not None and workers != 1:
            self.fail(
                f"{path}.workers",
                f"1 (type {spec.type} keeps its data inside one worker process; "
                "more workers would each hold a separate copy)",
                str(workers),
            )
        hello = None
        if kind == "hellos":
            hello = self.text(body.get("hello", "greeting"), f"{path}.hello")
        bigger_than = self.bigger_than(_or_empty(body.get("biggerThan")), f"{path}.biggerThan")
        if len(self.problems) > before or type_ is None or workers is None:
            return None
        return ComponentConfig(
            kind, name, type_, metadata, workers, hello, bigger_than, tuple(refs)
        )

    def secret_refs(
        self, value: Any, path: str, spec: registry.ComponentType | None, metadata: Any
    ) -> list[SecretRef]:
        """`secret_ref`: a list of {name, key, sub_key, inject_as}; read later (`resolve`)."""
        if value is None:
            return []
        if spec is not None and spec.kind == "secret_store":
            # the supervisor opens stores with their own metadata only
            self.fail(path, "no secret_ref: secret stores take their metadata as given", "a value")
            return []
        expected = "a list of {name, key, sub_key, inject_as} (sub_key optional)"
        if not isinstance(value, list):
            self.fail(path, expected, _describe(value))
            return []
        refs: list[SecretRef] = []
        for i, entry in enumerate(value):
            where = f"{path}[{i}]"
            required = ("name", "key", "inject_as")
            body = self.mapping(entry, where, _SECRET_REF, required=required, expected=expected)
            if body is None:
                continue
            texts = {k: self.text(body[k], _join(where, k)) for k in body}
            if any(t is None for t in texts.values()) or not all(k in body for k in required):
                continue
            ref = SecretRef(
                texts["name"] or "",
                texts["key"] or "",
                texts.get("sub_key") or "",
                texts["inject_as"] or "",
            )
            target = _join(where, "inject_as")
            if spec is not None and ref.inject_as not in spec.metadata:
                keys = ", ".join(sorted(spec.metadata)) or "none"
                self.fail(
                    target,
                    f"a metadata key of {spec.kind} type {spec.type}: {keys}",
                    repr(ref.inject_as),
                )
            elif isinstance(metadata, dict) and ref.inject_as in metadata:
                self.fail(target, "a metadata key not also set under metadata", repr(ref.inject_as))
            elif ref.inject_as in {r.inject_as for r in refs}:
                self.fail(target, "a metadata key injected once", repr(ref.inject_as))
            else:
                refs.append(ref)
        return refs

    def metadata(
        self,
        value: Any,
        path: str,
        spec: registry.ComponentType | None,
        name: str,
        injected: Collection[str] = (),
    ) -> dict[str, str]:
        if spec is None:  # unknown type, already reported: check the shape only
            allowed: Collection[str] = value.keys() if isinstance(value, dict) else ()
            required: Collection[str] = ()
            unknown = None
        else:
            allowed, required = sorted(spec.metadata), sorted(spec.required)
            unknown = f"one of the metadata keys of {spec.kind} type {spec.type}: " + (
                ", ".join(allowed) or "none"
            )
        body = self.mapping(
            value, path, allowed, expected="a mapping of metadata key to value", unknown=unknown
        )
        result: dict[str, str] = {}
        for key, item in (body or {}).items():
            if (text := self.scalar(item, _join(path, key))) is not None:
                result[key] = text
                if spec is not None and key in spec.readers:
                    read = spec.readers[key]
                    self.metadata_value(path, key, read=read, component=name, raw=item, text=text)
        for key in required:
            if body is not None and key not in body and key not in injected:
                assert spec is not None
                self.fail(_join(path, key), f"{key}: {spec.metadata[key]}", _MISSING)
        return result

    def metadata_value(
        self, path: str, key: str, *, read: Read, component: str, raw: Any, text: str
    ) -> None:
        """Parse one value as the worker will: what it would refuse at start is a problem."""
        try:
            read({key: text}, component)
        except MetadataError as exc:
            shown = self.found(raw, text) if isinstance(raw, str) else _describe(raw)
            self.fail(_join(path, key), exc.expected, shown)

    def bigger_than(self, value: Any, path: str) -> dict[str, int]:
        if not isinstance(value, dict):
            self.fail(path, "a mapping of sequencer key to an integer >= 0", _describe(value))
            return {}
        result: dict[str, int] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                self.fail(_join(path, key), "a non-empty string key (quote it)", _describe(key))
            elif (number := self.integer(item, _join(path, key), 0)) is not None:
                result[key] = number
        return result


def parse_document(doc: Any, source: str, environ: Mapping[str, str]) -> Config:
    walker = _Walker(environ)
    config = walker.config(doc, source)
    if config is None:
        raise ConfigError(source, walker.problems)
    return config
