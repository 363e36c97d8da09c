"""Component metadata values are checked at config load, by the parsers the workers use.

A value a worker would refuse at start (exit 78) must be a config problem
instead, reported by `layotto check` with file, key path, expected and found.
The supervisor runs the registry's readers; the worker builds its component
and block from the same functions, so both refuse exactly the same values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from layotto.boundary import config
from layotto.boundary.config import ConfigError
from layotto.boundary.specs import WorkerSpec
from layotto.components import registry
from layotto.components.errors import MetadataError
from layotto.supervisor import cli
from layotto.workers.block_table import open_block

ADDRESS = "ipc:///tmp/layotto-test/w-c-0.ipc"
LISTENERS = {"grpc": "127.0.0.1:34904", "http": "127.0.0.1:34999"}

# A value each key accepts ...
GOOD = {
    "redisHost": "127.0.0.1:6379",
    "redisPassword": "secret",
    "redisUsername": "app",
    "redisDB": "2",
    "enableTLS": "false",
    "maxRetries": "0",
    "maxRetryBackoff": "100",
    "dialTimeout": "500",
    "readTimeout": "1000",
    "keyPrefix": "name",
    "ttlInSeconds": "60",
    "segmentStep": "100",
    "consumerID": "group1",
    "processingTimeout": "2s",
    "redeliverInterval": "500ms",
    "maxLenApprox": "1000",
    "maxDeliveryAttempts": "5",
    "deadLetterTopic": "{topic}.dlq",
    "hello": "hi",
    "targets": '{"echo": "http://127.0.0.1:8080", "orders": ["http://a:1/v1", "https://b"]}',
    "rpc_request_timeout": "500",
    "secretsFile": str(Path(__file__).resolve().parents[1] / "configs" / "secrets.json"),
    "nestedSeparator": ".",
    "multiValued": "true",
    "prefix": "APP_",
    "url": "http://127.0.0.1:8080/hooks",
    "rootPath": os.path.join(tempfile.gettempdir(), "layotto-test-localstorage"),
}
# ... and one it refuses; keys missing here take any text.
BAD = {
    "redisHost": "nohostport",
    "redisDB": "-1",
    "enableTLS": "maybe",
    "maxRetries": "many",
    "maxRetryBackoff": "2s",
    "dialTimeout": "0",
    "readTimeout": "1.5",
    "keyPrefix": "a||b",
    "ttlInSeconds": "soon",
    "segmentStep": "0",
    "processingTimeout": "forever",
    "redeliverInterval": "-1s",
    "maxLenApprox": "0",
    "maxDeliveryAttempts": "0",
    "targets": '{"echo": "ftp://127.0.0.1:8080"}',
    "rpc_request_timeout": "0",
    "secretsFile": "",
    "nestedSeparator": "",
    "multiValued": "perhaps",
    "url": "ftp://127.0.0.1/files",
    "rootPath": "relative/dir",
}
FREE_TEXT = {"redisPassword", "redisUsername", "consumerID", "deadLetterTopic", "hello", "prefix"}

EVERY_KEY = sorted(
    (kind, type_, key) for (kind, type_), spec in registry.TYPES.items() for key in spec.metadata
)
BAD_KEYS = [case for case in EVERY_KEY if case[2] in BAD]


def parse_component(kind: str, type_: str, metadata: dict[str, Any]) -> config.Config:
    doc = {"listeners": LISTENERS, kind: {"c": {"type": type_, "metadata": metadata}}}
    return config.parse(yaml.safe_dump(doc), "test.yaml", {})


def needed(kind: str, type_: str) -> dict[str, str]:
    return {key: GOOD[key] for key in registry.TYPES[(kind, type_)].required}


def test_every_accepted_key_has_a_reader_and_a_test_value() -> None:
    for (kind, type_), spec in registry.TYPES.items():
        assert set(spec.readers) == set(spec.metadata), (kind, type_)
        assert set(spec.metadata) <= set(GOOD), (kind, type_)
        assert set(spec.metadata) <= set(BAD) | FREE_TEXT, (kind, type_)


def test_check_reports_every_bad_value_with_file_key_path_expected_and_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "listeners: {grpc: '127.0.0.1:34904', http: '127.0.0.1:34999'}\n"
        "state:\n"
        "  state_demo:\n"
        "    type: redis\n"
        "    metadata: {redisHost: nohostport, maxRetries: many, keyPrefix: 'a||b'}\n"
        "pub_subs:\n"
        "  events:\n"
        "    type: in-memory\n"
        "    metadata: {processingTimeout: forever}\n"
    )
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "-c", str(path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: state.state_demo.metadata.redisHost: "
        'expected "host:port" (or "[ipv6]:port"), port 1..65535, found \'nohostport\'',
        f"{path}: state.state_demo.metadata.maxRetries: expected an integer ≥ 0, found 'many'",
        f"{path}: state.state_demo.metadata.keyPrefix: "
        "expected appid, name, none or a prefix without '||', found 'a||b'",
        f"{path}: pub_subs.events.metadata.processingTimeout: "
        'expected a positive duration (seconds, or like "500ms", "15s", "1m"), found \'forever\'',
        "4 problem(s) found",
    ]


def test_check_passes_a_config_that_sets_every_key_well(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc: dict[str, Any] = {"listeners": LISTENERS}
    for (kind, type_), spec in registry.TYPES.items():
        name = f"{kind}_{type_}".replace("-", "_")
        metadata = {key: GOOD[key] for key in spec.metadata}
        doc.setdefault(kind, {})[name] = {"type": type_, "metadata": metadata}
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SystemExit) as exited:
        cli.main(["check", "-c", str(path)])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK ")


def test_numbers_written_as_yaml_numbers_are_checked_as_text() -> None:
    cfg = parse_component("pub_subs", "in-memory", {"processingTimeout": 0.5})
    component = cfg.component("c")
    assert component is not None and component.metadata == {"processingTimeout": "0.5"}
    with pytest.raises(ConfigError) as caught:
        parse_component("state", "redis", {**needed("state", "redis"), "readTimeout": 1.5})
    assert str(caught.value) == (
        "test.yaml: state.c.metadata.readTimeout: expected an integer ≥ 1, found 1.5"
    )


@pytest.mark.parametrize(("kind", "type_", "key"), BAD_KEYS, ids=str)
def test_config_and_worker_refuse_the_same_value_alike(kind: str, type_: str, key: str) -> None:
    metadata = {**needed(kind, type_), key: BAD[key]}
    with pytest.raises(ConfigError) as caught:
        parse_component(kind, type_, metadata)
    [problem] = caught.value.problems
    assert problem.key_path == f"{kind}.c.metadata.{key}"
    assert problem.found == repr(BAD[key])
    # The worker, given what the check refused, refuses it for the same reason.
    with pytest.raises(MetadataError) as refused:
        open_block(WorkerSpec(kind, "c", type_, metadata, "app", 0, ADDRESS)).close()
    assert (refused.value.key, refused.value.expected) == (key, problem.expected)


@pytest.mark.parametrize(("kind", "type_"), sorted(registry.TYPES), ids=str)
def test_config_and_worker_accept_every_good_value(kind: str, type_: str) -> None:
    metadata = {key: GOOD[key] for key in registry.TYPES[(kind, type_)].metadata}
    component = parse_component(kind, type_, metadata).component("c")
    assert component is not None and dict(component.metadata) == metadata
    open_block(WorkerSpec(kind, "c", type_, metadata, "app", 0, ADDRESS)).close()


SUPERVISOR_IMPORTS = textwrap.dedent(
    """
    import sys
    import yaml
    from layotto.components import registry
    from layotto.boundary import config
    from layotto.supervisor import arbiter, cli, runner

    doc = {"listeners": {"grpc": "127.0.0.1:1", "http": "127.0.0.1:2"}}
    for (kind, type_), spec in registry.TYPES.items():
        metadata = {key: GOOD[key] for key in spec.metadata}
        doc.setdefault(kind, {})[kind + type_] = {"type": type_, "metadata": metadata}
    config.parse(yaml.safe_dump(doc), "x.yaml", {})
    try:
        bad = {**doc, "lock": {"l": {"type": "redis", "metadata": {"redisHost": "x"}}}}
        config.parse(yaml.safe_dump(bad), "x.yaml", {})
    except config.ConfigError:
        pass
    print(sorted(m for m in ("redis", "grpc", "pynng", "urllib3") if m in sys.modules))
    """
)


def test_the_supervisor_checks_metadata_without_redis_grpc_or_pynng() -> None:
    # They start threads or hold sockets; the supervisor forks (docs/design.md).
    code = f"GOOD = {GOOD!r}\n{SUPERVISOR_IMPORTS}"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
