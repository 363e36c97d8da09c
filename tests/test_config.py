"""The config loader: shipped files load, and every bad file is explained completely.

Pure and fast: configs are built as dicts, dumped to YAML text and parsed with an
explicit environment, so no test depends on the machine's own variables.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from layotto.boundary import config
from layotto.boundary.config import (
    Address,
    ComponentConfig,
    Config,
    ConfigError,
    Problem,
    RuntimeConfig,
)
from layotto.components import registry

SRC = "test.yaml"
CONFIGS = Path(__file__).resolve().parent.parent / "configs"

BASE: dict[str, Any] = {
    "app": {"app_id": "app1"},
    "listeners": {"grpc": "127.0.0.1:34904", "http": "127.0.0.1:34999"},
    "hellos": {"helloworld": {"type": "helloworld"}},
    "state": {"state_demo": {"type": "in-memory"}},
    "lock": {"lock_demo": {"type": "in-memory"}},
    "sequencer": {"sequencer_demo": {"type": "in-memory"}},
}
REDIS = {"redisHost": "127.0.0.1:6379"}
# A value of every key some type requires.
REQUIRED = {
    **REDIS,
    "targets": '{"echo": "http://127.0.0.1:8080"}',
    "url": "http://127.0.0.1:8080",
    "rootPath": "/tmp/x",
}


def doc(**sections: Any) -> dict[str, Any]:
    """BASE with top-level sections replaced; a section given as None is removed."""
    d = copy.deepcopy(BASE)
    for key, value in sections.items():
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value
    return d


def parse(d: dict[str, Any] | str, environ: Mapping[str, str] | None = None) -> Config:
    text = d if isinstance(d, str) else yaml.safe_dump(d, sort_keys=False)
    return config.parse(text, SRC, environ or {})


def errors(d: dict[str, Any] | str, environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(d, environ)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    assert info.value.source == SRC
    return lines


def one_error(d: dict[str, Any] | str, environ: Mapping[str, str] | None = None) -> str:
    lines = errors(d, environ)
    assert len(lines) == 1, lines
    return lines[0]


def with_state(entry: dict[str, Any], name: str = "state_demo") -> dict[str, Any]:
    return doc(state={name: entry})


# -- shipped configs ---------------------------------------------------------------------


def test_standalone_loads_all_in_memory() -> None:
    cfg = config.load(str(CONFIGS / "standalone.yaml"), environ={})
    assert cfg.app.app_id == "app1"
    assert cfg.app.grpc_callback_port == 9999
    assert str(cfg.listeners.grpc) == "127.0.0.1:34904"
    assert str(cfg.listeners.http) == "127.0.0.1:34999"
    assert [(c.kind, c.name, c.type, c.workers) for c in cfg.components] == [
        ("hellos", "helloworld", "helloworld", 1),
        ("state", "state_demo", "in-memory", 1),
        ("lock", "lock_demo", "in-memory", 1),
        ("sequencer", "sequencer_demo", "in-memory", 1),
        ("config_store", "config_demo", "in-memory", 1),
        ("pub_subs", "pub_subs_demo", "in-memory", 1),
        ("secret_store", "secret_demo", "local.file", 1),
        ("bindings", "files_demo", "localstorage", 1),
    ]
    secrets = cfg.component("secret_demo")
    # relative to the config file's directory, made absolute at load
    assert secrets is not None
    assert secrets.metadata == {"secretsFile": str(CONFIGS.resolve() / "secrets.json")}
    files = cfg.component("files_demo")
    assert files is not None
    assert files.metadata == {"rootPath": "/tmp/layotto-bindings/files_demo"}
    moved = config.load(str(CONFIGS / "standalone.yaml"), environ={"LAYOTTO_BINDINGS_ROOT": "/b"})
    assert (moved.component("files_demo") or files).metadata == {"rootPath": "/b/files_demo"}
    hello = cfg.component("helloworld")
    assert hello is not None and hello.hello == "greeting"
    assert cfg.runtime == RuntimeConfig()


def test_redis_config_loads_with_default_address() -> None:
    cfg = config.load(str(CONFIGS / "redis.yaml"), environ={})
    assert [(c.name, c.type, c.workers) for c in cfg.of_kind("state")] == [
        ("state_demo", "redis", 2)
    ]
    for name in ("state_demo", "lock_demo", "sequencer_demo", "config_demo", "pub_subs_demo"):
        c = cfg.component(name)
        assert c is not None and c.type == "redis"
        assert c.metadata == {"redisHost": "127.0.0.1:6379"}
    state = cfg.component("state_demo")
    assert state is not None and state.secrets == {"redisPassword": ""}  # secrets.json's
    assert [c.workers for c in cfg.components] == [1, 2, 1, 1, 1, 1, 1]
    assert {c.name for c in cfg.components} == {
        "secret_demo",
        "helloworld",
        "state_demo",
        "lock_demo",
        "sequencer_demo",
        "config_demo",
        "pub_subs_demo",
    }


def test_redis_config_takes_address_and_ports_from_environment() -> None:
    env = {"REDIS_ADDR": "10.1.2.3:7000", "LAYOTTO_GRPC_PORT": "4000", "LAYOTTO_HTTP_PORT": "4001"}
    cfg = config.load(str(CONFIGS / "redis.yaml"), environ=env)
    redis = [c for c in cfg.components if c.kind not in ("hellos", "secret_store")]
    assert {c.metadata.get("redisHost") for c in redis} == {"10.1.2.3:7000"}
    assert cfg.listeners.grpc == Address("127.0.0.1", 4000)
    assert cfg.listeners.http == Address("127.0.0.1", 4001)


def test_default_config_path_is_the_packaged_standalone() -> None:
    path = config.default_config_path()
    assert os.path.isfile(path)
    assert Path(path).name == "standalone.yaml"
    packaged = config.load(path, environ={})
    shipped = config.load(str(CONFIGS / "standalone.yaml"), environ={})
    assert dataclasses.replace(packaged, source=shipped.source) == shipped


def test_load_uses_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYOTTO_GRPC_PORT", "4321")
    cfg = config.load(str(CONFIGS / "standalone.yaml"))
    assert cfg.listeners.grpc.port == 4321


@pytest.mark.parametrize(("kind", "type_"), sorted(registry.TYPES), ids=str)
def test_every_registered_type_has_a_loadable_minimal_config(kind: str, type_: str) -> None:
    spec = registry.TYPES[(kind, type_)]
    values = {**REQUIRED, "secretsFile": "secrets.json"}
    entry: dict[str, Any] = {"type": type_, "metadata": {k: values[k] for k in spec.required}}
    cfg = parse({**doc(**{k: None for k in registry.KINDS}), kind: {"c1": entry}})
    assert [(c.kind, c.type) for c in cfg.components] == [(kind, type_)]


# -- environment substitution --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "environ", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),  # as in the shell: empty counts as unset
        ("${A:-dflt}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A}", {"A": ""}, ""),
        ("${R:-127.0.0.1:6379}", {}, "127.0.0.1:6379"),
        ("$$", {}, "$"),
        ("pa$$word", {}, "pa$word"),
        ("$${A}", {"A": "x"}, "${A}"),
        ("$$$${A}", {"A": "x"}, "$${A}"),
        ("$$${A}", {"A": "x"}, "$x"),
        ("a$b", {}, "a$b"),  # a lone $ is literal
        ("end$", {}, "end$"),
        ("no dollars", {}, "no dollars"),
    ],
)
def test_substitution(raw: str, environ: dict[str, str], expected: str) -> None:
    cfg = parse(doc(hellos={"h": {"type": "helloworld", "hello": raw}}), environ)
    hello = cfg.component("h")
    assert hello is not None and hello.hello == expected


def test_substituted_text_is_never_parsed_as_yaml() -> None:
    env = {"V": "[1, 2]: {x: y} # not a comment", "B": "true"}
    meta = {**REDIS, "redisPassword": "${V}", "keyPrefix": "${B}"}
    cfg = parse(with_state({"type": "redis", "metadata": meta}), env)
    c = cfg.component("state_demo")
    assert c is not None
    assert c.metadata == {
        **REDIS,
        "redisPassword": "[1, 2]: {x: y} # not a comment",
        "keyPrefix": "true",
    }


def test_substitution_applies_to_every_string_field() -> None:
    env = {"ID": "myapp", "H": "10.0.0.1", "LVL": "debug", "DIR": "/run/x", "T": "redis"}
    cfg = parse(
        doc(
            app={"app_id": "${ID}", "grpc_callback_host": "${H}"},
            listeners={"grpc": "${H}:1000", "http": "${H}:1001"},
            runtime={"log_level": "${LVL}", "run_dir": "${DIR}"},
            state={"s": {"type": "${T}", "metadata": {"redisHost": "${H}:6379"}}},
        ),
        env,
    )
    assert cfg.app.app_id == "myapp"
    assert cfg.app.grpc_callback_host == "10.0.0.1"
    assert cfg.listeners.grpc == Address("10.0.0.1", 1000)
    assert cfg.runtime.log_level == "DEBUG"
    assert cfg.runtime.run_dir == "/run/x"
    s = cfg.component("s")
    assert s is not None and s.type == "redis" and s.metadata["redisHost"] == "10.0.0.1:6379"


def test_numeric_strings_are_accepted_for_numbers_after_substitution() -> None:
    env = {"W": "3", "T": "2.5", "P": "9000", "N": "7"}
    cfg = parse(
        doc(
            app={"grpc_callback_port": "${P}"},
            runtime={"request_timeout": "${T}", "shutdown_grace": "4", "start_timeout": "1e1"},
            state={"s": {"type": "redis", "metadata": REDIS, "workers": "${W}"}},
            sequencer={"q": {"type": "in-memory", "biggerThan": {"k": "${N}"}}},
        ),
        env,
    )
    assert cfg.app.grpc_callback_port == 9000
    assert cfg.runtime.request_timeout == 2.5
    assert cfg.runtime.shutdown_grace == 4.0
    assert cfg.runtime.start_timeout == 10.0
    s, q = cfg.component("s"), cfg.component("q")
    assert s is not None and s.workers == 3
    assert q is not None and q.bigger_than == {"k": 7}


def test_unset_variable_without_default_names_the_variable() -> None:
    line = one_error(doc(listeners={"grpc": "127.0.0.1:${GRPC_PORT}", "http": "h:1"}))
    assert line == (
        "test.yaml: listeners.grpc: expected environment variable GRPC_PORT to be set "
        "(or a default: ${GRPC_PORT:-default}), found GRPC_PORT is not set"
    )


def test_every_unset_variable_in_one_string_is_reported() -> None:
    lines = errors(doc(listeners={"grpc": "${HOST}:${PORT}", "http": "h:1"}))
    assert [line.split(", found ")[1] for line in lines] == [
        "HOST is not set",
        "PORT is not set",
    ]
    assert all(line.startswith("test.yaml: listeners.grpc: expected ") for line in lines)


@pytest.mark.parametrize(
    ("raw", "found"),
    [
        ("${A", "unclosed '${A'"),
        ("x${A:-1", "unclosed '${A:-1'"),
        ("${1A}", "'${1A}'"),
        ("${}", "'${}'"),
        ("${A:?msg}", "'${A:?msg}'"),
        ("${A B}", "'${A B}'"),
    ],
)
def test_malformed_substitution_is_an_error(raw: str, found: str) -> None:
    line = one_error(doc(app={"app_id": raw}), {"A": "x"})
    assert line.startswith("test.yaml: app.app_id: expected ${NAME} or ${NAME:-default}")
    assert "$$ for a literal $" in line
    assert line.endswith(f"found {found}")


def test_bad_number_after_substitution_shows_value_and_source() -> None:
    line = one_error(
        with_state({"type": "redis", "metadata": REDIS, "workers": "${W}"}), {"W": "x"}
    )
    assert line == (
        "test.yaml: state.state_demo.workers: expected an integer >= 1, found 'x' (from '${W}')"
    )


# -- error messages, kind by kind ---------------------------------------------------------


def test_problem_line_format() -> None:
    err = ConfigError("f.yaml", [Problem("a.b", "X", "Y"), Problem("", "Z", "W")])
    assert str(err) == "f.yaml: a.b: expected X, found Y\nf.yaml: expected Z, found W"
    assert err.problems == [Problem("a.b", "X", "Y"), Problem("", "Z", "W")]


@pytest.mark.parametrize(
    ("sections", "path", "allowed", "found"),
    [
        (
            {"states": {}},
            "states",
            "app, listeners, runtime, hellos, state, lock, sequencer, config_store, pub_subs, "
            "rpcs, secret_store, bindings",
            "unknown key 'states' (did you mean 'state'?)",
        ),
        (
            {"app": {"appid": "x"}},
            "app.appid",
            "app_id, grpc_callback_port, grpc_callback_host",
            "unknown key 'appid' (did you mean 'app_id'?)",
        ),
        (
            {"listeners": {"grpc": "h:1", "http": "h:2", "admin": "h:3"}},
            "listeners.admin",
            "grpc, http",
            "unknown key 'admin'",
        ),
        (
            {"runtime": {"timeout": 1}},
            "runtime.timeout",
            "run_dir, request_timeout, shutdown_grace, start_timeout, max_connection_age, "
            "log_level, max_http_connections, max_receive_message_size, "
            "max_send_message_size, max_event_size, max_streams, max_websocket_connections, "
            "api_processes",
            "unknown key 'timeout' (did you mean 'start_timeout'?)",
        ),
        (
            {"state": {"s": {"type": "in-memory", "wokers": 1}}},
            "state.s.wokers",
            "type, metadata, workers, secret_ref",
            "unknown key 'wokers' (did you mean 'workers'?)",
        ),
        (
            {"state": {"s": {"type": "in-memory", "hello": "x"}}},
            "state.s.hello",
            "type, metadata, workers, secret_ref",
            "unknown key 'hello'",
        ),
        (
            {"lock": {"l": {"type": "in-memory", "biggerThan": {}}}},
            "lock.l.biggerThan",
            "type, metadata, workers, secret_ref",
            "unknown key 'biggerThan'",
        ),
        (
            {"hellos": {"h": {"type": "helloworld", "biggerThan": {}}}},
            "hellos.h.biggerThan",
            "type, metadata, workers, secret_ref, hello",
            "unknown key 'biggerThan'",
        ),
        (
            {"sequencer": {"q": {"type": "in-memory", "hello": "x"}}},
            "sequencer.q.hello",
            "type, metadata, workers, secret_ref, biggerThan",
            "unknown key 'hello'",
        ),
    ],
)
def test_unknown_keys_are_named_with_the_allowed_keys(
    sections: dict[str, Any], path: str, allowed: str, found: str
) -> None:
    line = one_error(doc(**sections))
    assert line == f"test.yaml: {path}: expected one of the keys {allowed}, found {found}"


def test_unknown_metadata_key_lists_the_types_metadata_keys() -> None:
    line = one_error(with_state({"type": "redis", "metadata": {**REDIS, "redisHots": "x"}}))
    allowed = ", ".join(sorted(registry.TYPES[("state", "redis")].metadata))
    assert line == (
        f"test.yaml: state.state_demo.metadata.redisHots: expected one of the metadata keys of "
        f"state type redis: {allowed}, found unknown key 'redisHots' (did you mean 'redisHost'?)"
    )


def test_missing_required_metadata_key() -> None:
    line = one_error(with_state({"type": "redis", "metadata": {"redisDB": 1}}))
    assert line == (
        "test.yaml: state.state_demo.metadata.redisHost: expected redisHost: host:port of the "
        "Redis server (required), found nothing (the key is missing)"
    )


def test_missing_metadata_section_still_needs_required_keys() -> None:
    line = one_error(doc(lock={"l": {"type": "redis"}}))
    assert line.startswith("test.yaml: lock.l.metadata.redisHost: expected redisHost: ")


def test_unknown_type_lists_the_kinds_types() -> None:
    line = one_error(with_state({"type": "mysql"}))
    assert line == (
        "test.yaml: state.state_demo.type: expected one of the state types in-memory, redis, "
        "found 'mysql'"
    )


def test_missing_type() -> None:
    line = one_error(with_state({"workers": 1}))
    assert line == (
        "test.yaml: state.state_demo.type: expected the required key 'type', "
        "found nothing (the key is missing)"
    )


@pytest.mark.parametrize("kind", ["state", "lock", "sequencer"])
def test_in_memory_with_two_workers_is_rejected(kind: str) -> None:
    line = one_error(doc(**{kind: {"c": {"type": "in-memory", "workers": 2}}}))
    assert line == (
        f"test.yaml: {kind}.c.workers: expected 1 (type in-memory keeps its data inside one "
        "worker process; more workers would each hold a separate copy), found 2"
    )


def test_redis_with_several_workers_is_fine() -> None:
    cfg = parse(with_state({"type": "redis", "metadata": REDIS, "workers": 8}))
    c = cfg.component("state_demo")
    assert c is not None and c.workers == 8


@pytest.mark.parametrize(
    ("workers", "found"),
    [
        (0, "0"),
        (-1, "-1"),
        (True, "true (a boolean)"),
        (1.5, "1.5"),
        ("two", "'two'"),
        (None, "null (no value)"),
        ([1], "a list"),
    ],
)
def test_bad_workers(workers: Any, found: str) -> None:
    line = one_error(with_state({"type": "redis", "metadata": REDIS, "workers": workers}))
    assert line == f"test.yaml: state.state_demo.workers: expected an integer >= 1, found {found}"


def test_metadata_scalars_are_coerced_to_strings() -> None:
    meta = {**REDIS, "enableTLS": True, "redisDB": 2, "maxRetries": 0, "readTimeout": 1500}
    cfg = parse(with_state({"type": "redis", "metadata": {**meta, "keyPrefix": False}}))
    c = cfg.component("state_demo")
    assert c is not None
    assert dict(c.metadata) == {
        "redisHost": "127.0.0.1:6379",
        "enableTLS": "true",
        "redisDB": "2",
        "maxRetries": "0",
        "readTimeout": "1500",
        "keyPrefix": "false",
    }
    assert all(isinstance(v, str) for v in c.metadata.values())


@pytest.mark.parametrize(("value", "found"), [(None, "null (no value)"), ({"a": 1}, "a mapping")])
def test_metadata_value_must_be_a_scalar(value: Any, found: str) -> None:
    line = one_error(with_state({"type": "in-memory", "metadata": {"keyPrefix": value}}))
    assert line == (
        "test.yaml: state.state_demo.metadata.keyPrefix: expected a scalar (string, number or "
        f"boolean), found {found}"
    )


def test_metadata_must_be_a_mapping() -> None:
    line = one_error(with_state({"type": "in-memory", "metadata": ["keyPrefix"]}))
    assert line == (
        "test.yaml: state.state_demo.metadata: expected a mapping of metadata key to value, "
        "found a list"
    )


def test_non_string_keys_are_rejected() -> None:
    # YAML 1.1 reads an unquoted `on` as the boolean true.
    line = one_error("on: 1\n" + yaml.safe_dump(BASE))
    assert line == "test.yaml: True: expected a string key (quote it), found true (a boolean)"


def test_string_field_given_a_number_suggests_quoting() -> None:
    line = one_error(doc(app={"app_id": 123}))
    assert line == (
        "test.yaml: app.app_id: expected a string (quote the value to make it one), found 123"
    )


@pytest.mark.parametrize("name", ["has space", "slash/name", "ünïcode", ""])
def test_bad_component_names(name: str) -> None:
    line = one_error(with_state({"type": "in-memory"}, name=name))
    assert line == (
        f"test.yaml: state.{name}: expected a component name of letters, digits, _ . -, "
        f"found {name!r}"
    )


def test_component_names_are_unique_across_kinds() -> None:
    line = one_error(doc(lock={"state_demo": {"type": "in-memory"}}))
    assert line == (
        "test.yaml: lock.state_demo: expected a name unique across all kinds "
        "(already used at state.state_demo), found 'state_demo'"
    )


def test_duplicate_yaml_key_is_an_error_with_its_line() -> None:
    text = yaml.safe_dump(doc(state=None)) + "state:\n  a: {type: in-memory}\n  a: {type: redis}\n"
    line = one_error(text)
    assert line.startswith("test.yaml: expected valid YAML, found duplicate key 'a' (line ")
    lineno = text.splitlines().index("  a: {type: redis}") + 1
    assert line.endswith(f"(line {lineno}, column 3)")


def test_a_key_holding_only_an_anchor_is_still_unknown() -> None:
    text = (
        "listeners: {grpc: 'h:1', http: 'h:2'}\n"
        "x-redis: &redis {type: redis, metadata: {redisHost: 'r:1'}, workers: 2}\n"
    )
    # Compose-style `x-` extension keys are not a thing here: every key is in the schema.
    text += "state:\n  s:\n    <<: *redis\n    workers: 3\n"
    line = one_error(text)
    assert line.startswith("test.yaml: x-redis: expected one of the keys ")


def test_yaml_merge_keys_may_be_overridden() -> None:
    text = (
        "listeners: {grpc: 'h:1', http: 'h:2'}\n"
        "state:\n  a: &redis {type: redis, metadata: {redisHost: 'r:1'}, workers: 2}\n"
        "  b:\n    <<: *redis\n    workers: 3\n"
    )
    cfg = parse(text)
    assert [(c.name, c.workers, dict(c.metadata)) for c in cfg.components] == [
        ("a", 2, {"redisHost": "r:1"}),
        ("b", 3, {"redisHost": "r:1"}),
    ]


def test_at_least_one_component() -> None:
    line = one_error(doc(hellos=None, state=None, lock=None, sequencer=None))
    assert line == (
        "test.yaml: expected at least one component (under hellos, state, lock, sequencer, "
        "config_store, pub_subs, rpcs, secret_store, bindings), found none"
    )


def test_empty_sections_count_as_absent() -> None:
    cfg = parse(
        "listeners: {grpc: 'h:1', http: 'h:2'}\n"
        "app:\nruntime:\nlock:\nstate: {s: {type: in-memory}}\n"
    )
    assert [c.name for c in cfg.components] == ["s"]
    assert cfg.runtime == RuntimeConfig()


def test_section_must_be_a_mapping() -> None:
    line = one_error(doc(lock=["lock_demo"]))
    assert (
        line
        == "test.yaml: lock: expected a mapping of component name to its settings, found a list"
    )


def test_component_entry_must_be_a_mapping() -> None:
    line = one_error(doc(lock={"lock_demo": "in-memory"}))
    assert line == (
        "test.yaml: lock.lock_demo: expected a mapping with keys type, metadata, workers, "
        "secret_ref, "
        "found 'in-memory'"
    )


# -- listeners, app, runtime --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:1", Address("127.0.0.1", 1)),
        ("0.0.0.0:65535", Address("0.0.0.0", 65535)),
        ("localhost:34904", Address("localhost", 34904)),
        ("[::1]:34904", Address("::1", 34904)),
        ("[::]:80", Address("::", 80)),
    ],
)
def test_good_addresses(text: str, expected: Address) -> None:
    cfg = parse(doc(listeners={"grpc": text, "http": "127.0.0.1:2"}))
    assert cfg.listeners.grpc == expected
    assert str(cfg.listeners.grpc) == text


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("127.0.0.1", "'127.0.0.1'"),
        ("127.0.0.1:0", "'127.0.0.1:0'"),
        ("127.0.0.1:65536", "'127.0.0.1:65536'"),
        (":80", "':80'"),
        ("::1:80", "'::1:80'"),
        ("host:http", "'host:http'"),
        ("my host:80", "'my host:80'"),
        ("[::1]80", "'[::1]80'"),
    ],
)
def test_bad_addresses(value: str, found: str) -> None:
    line = one_error(doc(listeners={"grpc": value, "http": "127.0.0.1:2"}))
    assert line == (
        "test.yaml: listeners.grpc: expected 'host:port' (or '[ipv6]:port') with a port in "
        f"1..65535, found {found}"
    )


def test_address_must_be_a_string() -> None:
    line = one_error(doc(listeners={"grpc": 34904, "http": "127.0.0.1:2"}))
    assert line == (
        "test.yaml: listeners.grpc: expected a string 'host:port' (or '[ipv6]:port') with a "
        "port in 1..65535, found 34904"
    )


def test_listeners_need_different_ports() -> None:
    line = one_error(doc(listeners={"grpc": "127.0.0.1:5000", "http": "0.0.0.0:5000"}))
    assert line == (
        "test.yaml: listeners.http: expected a port other than the gRPC listener's "
        "(127.0.0.1:5000): each listener binds its own, found 0.0.0.0:5000"
    )


def test_listeners_are_required() -> None:
    assert errors(doc(listeners=None)) == [
        "test.yaml: listeners: expected the required key 'listeners', "
        "found nothing (the key is missing)"
    ]
    assert errors(doc(listeners={"grpc": "h:1"})) == [
        "test.yaml: listeners.http: expected the required key 'http', "
        "found nothing (the key is missing)"
    ]


def test_app_defaults() -> None:
    cfg = parse(doc(app=None))
    assert (cfg.app.app_id, cfg.app.grpc_callback_port, cfg.app.grpc_callback_host) == (
        "",
        9999,
        "127.0.0.1",
    )


@pytest.mark.parametrize(("port", "found"), [(-1, "-1"), (65536, "65536"), ("x", "'x'")])
def test_bad_callback_port(port: Any, found: str) -> None:
    line = one_error(doc(app={"grpc_callback_port": port}))
    assert line == (
        f"test.yaml: app.grpc_callback_port: expected an integer in 0..65535, found {found}"
    )


def test_callback_port_zero_means_no_app_callback() -> None:
    assert parse(doc(app={"grpc_callback_port": 0})).app.grpc_callback_port == 0


def test_empty_callback_host() -> None:
    line = one_error(doc(app={"grpc_callback_host": ""}))
    assert line == "test.yaml: app.grpc_callback_host: expected a non-empty host, found ''"


def test_runtime_values() -> None:
    cfg = parse(
        doc(
            runtime={
                "run_dir": "/var/run/layotto",
                "request_timeout": 1,
                "shutdown_grace": 0.5,
                "start_timeout": 3,
                "max_connection_age": 60,
                "log_level": "warning",
            }
        )
    )
    assert cfg.runtime == RuntimeConfig("/var/run/layotto", 1.0, 0.5, 3.0, 60.0, "WARNING")
    assert isinstance(cfg.runtime.request_timeout, float)
    assert cfg.run_dir() == "/var/run/layotto"


@pytest.mark.parametrize(
    "key", ["request_timeout", "shutdown_grace", "start_timeout", "max_connection_age"]
)
@pytest.mark.parametrize(
    ("value", "found"),
    [
        (0, "0"),
        (-1.5, "-1.5"),
        ("abc", "'abc'"),
        (True, "true (a boolean)"),
        (float("inf"), "inf"),
        ("nan", "'nan'"),
    ],
)
def test_runtime_numbers_must_be_positive(key: str, value: Any, found: str) -> None:
    line = one_error(doc(runtime={key: value}))
    assert line == f"test.yaml: runtime.{key}: expected a number of seconds > 0, found {found}"


def test_message_size_defaults_are_grpcs() -> None:
    runtime = parse(doc()).runtime
    assert runtime.max_receive_message_size == 4 * 1024 * 1024  # gRPC's receive default
    assert runtime.max_send_message_size is None  # gRPC's send default: no limit
    # A subscriber with gRPC's defaults must be able to receive every event.
    assert runtime.max_event_size == 4 * 1024 * 1024


def test_message_sizes_take_bytes_or_units() -> None:
    runtime = parse(
        doc(
            runtime={
                "max_receive_message_size": "16MiB",
                "max_send_message_size": 8388608,
                "max_event_size": "512 KiB",
            }
        )
    ).runtime
    assert (
        runtime.max_receive_message_size,
        runtime.max_send_message_size,
        runtime.max_event_size,
    ) == (16 * 1024 * 1024, 8 * 1024 * 1024, 512 * 1024)
    assert parse(doc(runtime={"max_send_message_size": None})).runtime.max_send_message_size is None
    config = parse(doc(runtime={"max_event_size": "2MiB"}))
    assert Config.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    "key", ["max_receive_message_size", "max_send_message_size", "max_event_size"]
)
@pytest.mark.parametrize(
    ("value", "found"),
    [
        (1023, "1023"),
        ("2GiB", "'2GiB'"),
        ("4 MB", "'4 MB'"),
        (1.5, "1.5"),
        (True, "true (a boolean)"),
    ],
)
def test_message_sizes_are_checked(key: str, value: Any, found: str) -> None:
    line = one_error(doc(runtime={key: value}))
    assert line == (
        f"test.yaml: runtime.{key}: expected a size in bytes from 1024 to 2147483647 "
        f"(a number, or like '4MiB', '512KiB'), found {found}"
    )


def test_send_limit_must_let_events_through() -> None:
    line = one_error(doc(runtime={"max_send_message_size": "1MiB", "max_event_size": "2MiB"}))
    assert line == (
        "test.yaml: runtime.max_send_message_size: expected at least runtime.max_event_size "
        "(2097152): subscription streams send events, found 1048576"
    )


def test_stream_limits() -> None:
    assert parse(doc()).runtime.max_streams == 512
    assert parse(doc()).runtime.max_websocket_connections == 512
    cfg = parse(doc(runtime={"max_streams": 3, "max_websocket_connections": "7"}))
    assert (cfg.runtime.max_streams, cfg.runtime.max_websocket_connections) == (3, 7)
    assert config.Config.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg


@pytest.mark.parametrize("key", ["max_streams", "max_websocket_connections"])
@pytest.mark.parametrize(
    ("value", "found"),
    [(0, "0"), (-1, "-1"), ("many", "'many'"), (2.5, "2.5"), (True, "true (a boolean)")],
)
def test_stream_limits_are_positive_integers(key: str, value: Any, found: str) -> None:
    line = one_error(doc(runtime={key: value}))
    assert line == (f"test.yaml: runtime.{key}: expected an integer in 1..100000, found {found}")


def test_api_processes() -> None:
    assert parse(doc()).runtime.api_processes == 2  # one serves, one stands by
    assert parse(doc(runtime={"api_processes": 1})).runtime.api_processes == 1
    line = one_error(doc(runtime={"api_processes": 0}))
    assert line == "test.yaml: runtime.api_processes: expected an integer in 1..8, found 0"


def test_bad_log_level() -> None:
    line = one_error(doc(runtime={"log_level": "loud"}))
    assert line == (
        "test.yaml: runtime.log_level: expected one of DEBUG, INFO, WARNING, ERROR, found 'loud'"
    )


def test_relative_run_dir_is_rejected() -> None:
    line = one_error(doc(runtime={"run_dir": "run/here"}))
    assert line == "test.yaml: runtime.run_dir: expected an absolute path, found 'run/here'"


def test_run_dir_expands_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    cfg = parse(doc(runtime={"run_dir": "~/layotto"}))
    assert cfg.runtime.run_dir == "/home/someone/layotto"


# -- hellos and sequencer extras --------------------------------------------------------


def test_hello_defaults_to_greeting_and_only_for_hellos() -> None:
    cfg = parse(doc())
    assert [(c.kind, c.hello) for c in cfg.components] == [
        ("hellos", "greeting"),
        ("state", None),
        ("lock", None),
        ("sequencer", None),
    ]


def test_bigger_than() -> None:
    cfg = parse(doc(sequencer={"q": {"type": "in-memory", "biggerThan": {"a": 0, "b": 100}}}))
    q = cfg.component("q")
    assert q is not None and q.bigger_than == {"a": 0, "b": 100}
    hello = cfg.component("helloworld")
    assert hello is not None and hello.bigger_than == {}


def test_bad_bigger_than() -> None:
    lines = errors(
        doc(sequencer={"q": {"type": "in-memory", "biggerThan": {"a": -1, "b": "x", 3: 4}}})
    )
    assert lines == [
        "test.yaml: sequencer.q.biggerThan.a: expected an integer >= 0, found -1",
        "test.yaml: sequencer.q.biggerThan.b: expected an integer >= 0, found 'x'",
        "test.yaml: sequencer.q.biggerThan.3: expected a non-empty string key (quote it), found 3",
    ]
    line = one_error(doc(sequencer={"q": {"type": "in-memory", "biggerThan": [1]}}))
    assert line == (
        "test.yaml: sequencer.q.biggerThan: expected a mapping of sequencer key to an integer "
        ">= 0, found a list"
    )


# -- whole-file problems -----------------------------------------------------------------


def test_all_problems_are_collected_together() -> None:
    lines = errors(
        doc(
            app={"grpc_callback_port": -1, "extra": 1},
            listeners={"grpc": "nope", "http": "127.0.0.1:${MISSING}"},
            runtime={"request_timeout": -1, "log_level": "loud"},
            hellos={"h": {"type": "helloworld", "hello": 3}},
            state={"s": {"type": "in-memory", "workers": 2}, "bad name": {"type": "x"}},
            lock={"s": {"type": "redis"}},
            sequencer={"q": {"type": "nope", "metadata": {"anything": "goes"}}},
        )
    )
    paths = [line.split(": ")[1] for line in lines]
    assert paths == [
        "app.extra",
        "app.grpc_callback_port",
        "listeners.grpc",
        "listeners.http",
        "runtime.request_timeout",
        "runtime.log_level",
        "hellos.h.hello",
        "state.s.workers",
        "state.bad name",
        "lock.s",
        "lock.s.metadata.redisHost",
        "sequencer.q.type",
    ]
    assert all(line.startswith("test.yaml: ") and ", found " in line for line in lines)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.problems == [
        Problem("", "a readable config file", "No such file or directory")
    ]
    assert (
        str(info.value)
        == f"{path}: expected a readable config file, found No such file or directory"
    )


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: expected a readable config file, found Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"app: {app_id: caf\xe9}\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(info.value).startswith(f"{path}: expected a UTF-8 text file, found ")


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("app:\n  app_id: [x\nlisteners: {}\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    (problem,) = info.value.problems
    assert problem.key_path == ""
    assert problem.expected == "valid YAML"
    assert "(line 3, column" in problem.found
    assert str(info.value) == f"{path}: expected valid YAML, found {problem.found}"


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("", "an empty document"),
        ("# only a comment\n", "an empty document"),
        ("- a\n- b\n", "a list"),
        ("just text", "'just text'"),
    ],
)
def test_document_must_be_a_mapping(text: str, found: str) -> None:
    assert one_error(text) == (
        "test.yaml: expected a mapping with keys app, listeners, runtime, hellos, state, lock, "
        f"sequencer, config_store, pub_subs, rpcs, secret_store, bindings, found {found}"
    )


def test_multiple_documents_are_rejected() -> None:
    line = one_error(yaml.safe_dump(BASE) + "---\n" + yaml.safe_dump(BASE))
    assert line.startswith("test.yaml: expected valid YAML, found ")
    assert "(line " in line


def test_yaml_cannot_build_python_objects() -> None:
    line = one_error("app: !!python/object/apply:os.system ['true']\n")
    assert line.startswith(
        "test.yaml: expected valid YAML, found could not determine a constructor"
    )


# -- the Config object -------------------------------------------------------------------


def test_json_round_trip() -> None:
    cfg = parse(
        doc(
            runtime={"run_dir": "/r", "request_timeout": 1.5, "log_level": "DEBUG"},
            listeners={"grpc": "[::1]:1", "http": "0.0.0.0:2"},
            state={"s": {"type": "redis", "metadata": {**REDIS, "enableTLS": True}, "workers": 4}},
            sequencer={"q": {"type": "in-memory", "biggerThan": {"k": 5}}},
        )
    )
    data = cfg.to_json()
    again = Config.from_json(json.loads(json.dumps(data)))
    assert again == cfg
    assert config.from_json(data) == cfg
    assert again.to_json() == data
    assert hash(again) == hash(cfg)
    assert again.run_dir() == cfg.run_dir()


@pytest.mark.parametrize("name", ["standalone.yaml", "redis.yaml"])
def test_shipped_configs_round_trip(name: str) -> None:
    cfg = config.load(str(CONFIGS / name), environ={})
    # everything but the values of secret_ref, which never travel in the JSON
    kept = [dataclasses.replace(c, secrets={}) for c in cfg.components]
    assert Config.from_json(json.loads(json.dumps(cfg.to_json()))) == dataclasses.replace(
        cfg, components=tuple(kept)
    )


def test_run_dir_is_keyed_by_user_and_config_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    a = parse(doc())
    other_port = parse(doc(listeners={"grpc": "127.0.0.1:40000", "http": "127.0.0.1:34998"}))
    other_file = config.parse(yaml.safe_dump(doc()), "other.yaml", {})
    prefix = f"/tmp/layotto-{os.getuid()}-"
    for cfg in (a, other_port, other_file):
        assert cfg.run_dir().startswith(prefix)
        digest = cfg.run_dir()[len(prefix) :]
        assert len(digest) == 10 and int(digest, 16) >= 0
    # what the file says does not move it: the CLI finds a sidecar from the path alone
    assert a.run_dir() == other_port.run_dir()
    assert a.run_dir() == config.default_run_dir(SRC)
    assert a.run_dir() != other_file.run_dir()
    assert a.run_dir() == parse(doc()).run_dir()  # stable across loads: restarts find it
    # nor does the environment, nor how the path is spelled
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert config.default_run_dir(SRC) == a.run_dir()
    assert config.default_run_dir(os.path.join(os.getcwd(), "sub", "..", SRC)) == a.run_dir()


def test_own_run_dir_is_used_and_the_default_still_names_the_file() -> None:
    cfg = parse(doc(runtime={"run_dir": "/var/run/layotto"}))
    assert cfg.run_dir() == "/var/run/layotto"
    assert config.default_run_dir(cfg.source) == parse(doc()).run_dir()


def test_config_is_frozen_and_hashable() -> None:
    cfg = parse(with_state({"type": "redis", "metadata": REDIS}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.source = "x"  # type: ignore[misc]
    c = cfg.component("state_demo")
    assert c is not None
    with pytest.raises(TypeError):
        c.metadata["redisHost"] = "x"  # type: ignore[index]
    assert isinstance(cfg.components, tuple)
    assert len({cfg, parse(with_state({"type": "redis", "metadata": REDIS}))}) == 1


def test_component_config_freezes_plain_dicts() -> None:
    meta = {"a": "1"}
    c = ComponentConfig("state", "s", "redis", meta)
    meta["a"] = "2"
    assert c.metadata == {"a": "1"}
    assert c == ComponentConfig("state", "s", "redis", {"a": "1"})
    assert hash(c) == hash(ComponentConfig("state", "s", "redis", {"a": "1"}))


def test_lookups() -> None:
    cfg = parse(doc(lock={"l1": {"type": "in-memory"}, "l2": {"type": "redis", "metadata": REDIS}}))
    assert [c.name for c in cfg.of_kind("lock")] == ["l1", "l2"]
    assert cfg.of_kind("nope") == ()
    l2 = cfg.component("l2")
    assert l2 is not None and l2.kind == "lock" and l2.type == "redis"
    assert cfg.component("missing") is None


def test_address_str() -> None:
    assert str(Address("127.0.0.1", 80)) == "127.0.0.1:80"
    assert str(Address("::1", 80)) == "[::1]:80"


def test_one_rpcs_component_since_invoke_service_names_none() -> None:
    rpc = {"type": "http", "metadata": {"targets": '{"s": "http://h:1"}'}}
    assert [c.name for c in parse(doc(rpcs={"r1": rpc})).components if c.kind == "rpcs"] == ["r1"]
    line = one_error(doc(rpcs={"r1": rpc, "r2": rpc}))
    assert line == (
        "test.yaml: rpcs: expected one component (InvokeService names a service id, "
        "not a component), found 2: r1, r2"
    )
