"""A secret injected with secret_ref reaches its worker and nothing else.

The real sidecar at DEBUG, a helloworld whose greeting comes from a
local.file secret store: SayHello proves the worker got it; then its value is
looked for in the sidecar's log, `layotto status`, `layotto check`, the
actuator's health and info JSON, and the command line and environment of
every process of the sidecar: absent. A reload reads the rotated secret, a
scaled secret store serves from every replica, and still nothing shows it.

Also the secrets rows of docs/design.md's failure modes: a broken secrets
file (DOWN, last read still served) and a reload whose secret is gone.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import grpc
import yaml

from layotto.proto import runtime_pb2 as pb
from layotto.proto import runtime_pb2_grpc
from tests.e2e.test_supervision import http_get
from tests.sidecar import Sidecar, running_sidecar


def _config(directory: Path) -> Path:
    document = {
        "listeners": {
            "grpc": "127.0.0.1:${LAYOTTO_GRPC_PORT}",
            "http": "127.0.0.1:${LAYOTTO_HTTP_PORT}",
        },
        "runtime": {"log_level": "DEBUG"},
        "secret_store": {
            "vault": {"type": "local.file", "metadata": {"secretsFile": "vault.json"}},
        },
        "hellos": {
            "greeter": {
                "type": "helloworld",
                "secret_ref": [{"name": "vault", "key": "greeting", "inject_as": "hello"}],
            }
        },
    }
    path = directory / "leaks.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _write_secret(sidecar: Sidecar, value: str) -> None:
    (Path(sidecar.config).parent / "vault.json").write_text(json.dumps({"greeting": value}))


def _hello(sidecar: Sidecar) -> str:
    with grpc.insecure_channel(sidecar.target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        answer = stub.SayHello(pb.SayHelloRequest(service_name="greeter", name="x"), timeout=10)
    return answer.hello


def _everything_shown(sidecar: Sidecar) -> dict[str, str]:
    """Every place a secret must not be, as text."""
    status, check = sidecar.cli("status"), sidecar.cli("check")
    shown = {
        "log": "\n".join(sidecar.lines),
        "status": status.stdout + status.stderr,
        "check": check.stdout + check.stderr,
    }
    for path in ("/actuator/health", "/actuator/health/liveness", "/actuator/info"):
        url = f"http://127.0.0.1:{sidecar.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            shown[path] = reply.read().decode()
    assert sidecar.process is not None
    for pid in [sidecar.process.pid, *sidecar.children()]:
        for what in ("cmdline", "environ"):
            try:
                raw = Path(f"/proc/{pid}/{what}").read_bytes()
            except FileNotFoundError:
                continue  # exited since listed
            shown[f"{pid}/{what}"] = raw.decode(errors="replace")
    return shown


def _assert_absent(value: str, shown: dict[str, str]) -> None:
    leaks = [where for where, text in shown.items() if value in text]
    assert leaks == [], f"the secret shows in {leaks}"


def test_secret_ref_leaks_nowhere(tmp_path: Path) -> None:
    first, rotated = f"first-{uuid.uuid4()}", f"rotated-{uuid.uuid4()}"
    (tmp_path / "vault.json").write_text(json.dumps({"greeting": first}))
    with running_sidecar(_config(tmp_path)) as sidecar:
        assert _hello(sidecar).startswith(first)  # the worker got it
        shown = _everything_shown(sidecar)
        assert any("greeter" in text for text in shown.values())  # we looked at the right things
        _assert_absent(first, shown)

        _write_secret(sidecar, rotated)
        mark = sidecar.mark()
        result = sidecar.cli("reload", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        sidecar.wait_for_log(r"reload: generation 2 serving", after=mark, timeout=60)
        assert _hello(sidecar).startswith(rotated)  # a reload reads secrets again

        result = sidecar.cli("scale", "vault", "2", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        shown = _everything_shown(sidecar)
        _assert_absent(first, shown)
        _assert_absent(rotated, shown)


def _get_secret(sidecar: Sidecar) -> dict[str, str]:
    with grpc.insecure_channel(sidecar.target) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        request = pb.GetSecretRequest(store_name="vault", key="greeting")
        return dict(stub.GetSecret(request, timeout=10).data)


def test_a_broken_secrets_file_is_down_and_served_from_the_last_read(tmp_path: Path) -> None:
    (tmp_path / "vault.json").write_text(json.dumps({"greeting": "hi"}))
    with running_sidecar(_config(tmp_path)) as sidecar:
        secrets = Path(sidecar.config).parent / "vault.json"
        mark = sidecar.mark()
        secrets.write_text("{not json")
        sidecar.wait_for_log(r"vault#0: component DOWN", after=mark)
        code, ready = http_get(sidecar, "/actuator/health/readiness")
        assert code == 503 and ready["components"]["vault"]["status"] == "DOWN"
        assert _get_secret(sidecar) == {"greeting": "hi"}
        mark = sidecar.mark()
        secrets.write_text(json.dumps({"greeting": "again"}))
        sidecar.wait_for_log(r"vault#0: component UP", after=mark)
        assert _get_secret(sidecar) == {"greeting": "again"}


def test_a_reload_whose_secret_is_gone_changes_nothing(tmp_path: Path) -> None:
    value = f"kept-{uuid.uuid4()}"
    (tmp_path / "vault.json").write_text(json.dumps({"greeting": value}))
    with running_sidecar(_config(tmp_path)) as sidecar:
        _write_secret_file(sidecar, {"other": "x"})
        result = sidecar.cli("reload", timeout=120)
        assert result.returncode != 0
        answer = result.stdout + result.stderr
        assert "hellos.greeter.secret_ref[0].key" in answer
        assert value not in answer
        assert _hello(sidecar).startswith(value)  # the old generation serves on


def _write_secret_file(sidecar: Sidecar, secrets: dict[str, str]) -> None:
    (Path(sidecar.config).parent / "vault.json").write_text(json.dumps(secrets))
