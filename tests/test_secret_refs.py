"""`secret_ref`: secrets read by the supervisor at load, injected into the
workers' metadata only, and never shown in a problem, a repr or the JSON the
API processes get."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from layotto.boundary import config
from layotto.boundary.config import ComponentConfig, Config, ConfigError
from layotto.supervisor.child_specs import worker_child

VALUE = "s3cr3t-value-never-shown"


def write(tmp_path: Path, components: dict[str, Any], secrets: object | None = None) -> str:
    (tmp_path / "vault.json").write_text(
        json.dumps({"redis": {"password": VALUE}} if secrets is None else secrets)
    )
    document = {
        "listeners": {"grpc": "127.0.0.1:1", "http": "127.0.0.1:2"},
        "secret_store": {
            "vault": {"type": "local.file", "metadata": {"secretsFile": "vault.json"}}
        },
        **components,
    }
    path = tmp_path / "layotto.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def state(*refs: dict[str, str], **metadata: str) -> dict[str, Any]:
    entry = {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", **metadata}}
    return {"state": {"st": {**entry, "secret_ref": list(refs)}}}


REF = {"name": "vault", "key": "redis:password", "inject_as": "redisPassword"}


def component(cfg: Config, name: str = "st") -> ComponentConfig:
    found = cfg.component(name)
    assert found is not None
    return found


def problems(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    text = str(caught.value)
    assert VALUE not in text
    return text


def test_the_secret_reaches_the_worker_spec_only(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, state(REF)), environ={})
    st = component(cfg)
    assert "redisPassword" not in st.metadata
    assert st.worker_metadata() == {"redisHost": "127.0.0.1:6379", "redisPassword": VALUE}
    child = worker_child(cfg, str(tmp_path), st, generation=1, slot=0, zygote_id="z")
    assert child.spec.metadata["redisPassword"] == VALUE  # travels on the control link
    # ... and nowhere else
    assert VALUE not in repr(cfg)
    assert VALUE not in json.dumps(cfg.to_json())
    rebuilt = config.from_json(cfg.to_json())  # what an API process gets
    assert component(rebuilt).secret_refs == st.secret_refs
    assert component(rebuilt).secrets == {}


def test_sub_key_and_multi_valued_secrets(tmp_path: Path) -> None:
    refs = {"name": "vault", "key": "redis", "sub_key": "password", "inject_as": "redisPassword"}
    path = write(tmp_path, state(refs))
    store = {"type": "local.file", "metadata": {"secretsFile": "vault.json", "multiValued": True}}
    doc = yaml.safe_load(Path(path).read_text())
    doc["secret_store"]["vault"] = store
    Path(path).write_text(yaml.safe_dump(doc))
    assert component(config.load(path, environ={})).secrets == {"redisPassword": VALUE}


def test_a_required_key_may_come_from_a_secret(tmp_path: Path) -> None:
    secrets = {"addr": "10.0.0.1:6379"}
    ref = {"name": "vault", "key": "addr", "inject_as": "redisHost"}
    path = write(tmp_path, {"lock": {"lk": {"type": "redis", "secret_ref": [ref]}}}, secrets)
    assert component(config.load(path, environ={}), "lk").worker_metadata() == {
        "redisHost": "10.0.0.1:6379"
    }


def test_a_reload_reads_the_secret_again(tmp_path: Path) -> None:
    path = write(tmp_path, state(REF))
    before = component(config.load(path, environ={}))
    (tmp_path / "vault.json").write_text(json.dumps({"redis": {"password": "rotated"}}))
    after = component(config.load(path, environ={}))
    assert after.secrets == {"redisPassword": "rotated"}
    assert after != before  # so the reload plan starts the component again


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            {**REF, "name": "nope"},
            "st.secret_ref[0].name: expected the name of a secret_store component of this "
            "file, found 'nope' (choose from vault)",
        ),
        (
            {**REF, "key": "redis:user"},
            "st.secret_ref[0].key: expected a secret of secret store 'vault', "
            "found 'redis:user' (not found)",
        ),
        (
            {**REF, "sub_key": "other"},
            "st.secret_ref[0].sub_key: expected the name of a value of secret "
            "'redis:password', found 'other' (not found)",
        ),
        (
            {**REF, "inject_as": "password"},
            "st.secret_ref[0].inject_as: expected a metadata key of state type redis",
        ),
        (
            {"name": "vault", "key": "redis:password"},
            "st.secret_ref[0].inject_as: expected the required key 'inject_as'",
        ),
    ],
    ids=["unknown store", "missing secret", "missing sub key", "unknown key", "no inject_as"],
)
def test_problems_name_the_ref_not_the_value(
    tmp_path: Path, ref: dict[str, str], message: str
) -> None:
    assert message in problems(write(tmp_path, state(ref)))


def test_a_value_the_key_refuses_is_not_shown(tmp_path: Path) -> None:
    ref = {"name": "vault", "key": "redis:password", "inject_as": "redisDB"}
    text = problems(write(tmp_path, state(ref)))
    assert "st.secret_ref[0].inject_as: expected an integer" in text
    assert "the secret's value (not shown)" in text


def test_an_unreadable_store_names_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, state(REF))
    (tmp_path / "vault.json").write_text('{"redis": "' + VALUE + '", broken')
    assert "vault.json is not a JSON object of secrets" in problems(path)
    (tmp_path / "vault.json").unlink()
    assert "cannot read" in problems(path)


def test_injected_and_given_metadata_conflict(tmp_path: Path) -> None:
    text = problems(write(tmp_path, state(REF, redisPassword="plain")))
    assert "expected a metadata key not also set under metadata" in text


def test_only_stores_the_supervisor_reads(tmp_path: Path) -> None:
    path = write(tmp_path, {"hellos": {"h": {"type": "helloworld"}}, **state(REF)})
    doc = yaml.safe_load(Path(path).read_text())
    doc["state"]["st"]["secret_ref"][0]["name"] = "h"
    Path(path).write_text(yaml.safe_dump(doc))
    assert "found 'h' (choose from vault)" in problems(path)


def test_local_env_refs_read_the_supervisors_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYOTTO_TEST_REDIS_PW", VALUE)
    path = write(tmp_path, state({"name": "env", "key": "REDIS_PW", "inject_as": "redisPassword"}))
    doc = yaml.safe_load(Path(path).read_text())
    doc["secret_store"]["env"] = {"type": "local.env", "metadata": {"prefix": "LAYOTTO_TEST_"}}
    Path(path).write_text(yaml.safe_dump(doc))
    assert component(config.load(path, environ={})).secrets == {"redisPassword": VALUE}


def test_a_secret_store_takes_no_secret_ref(tmp_path: Path) -> None:
    path = write(tmp_path, {})
    doc = yaml.safe_load(Path(path).read_text())
    doc["secret_store"]["vault"]["secret_ref"] = [{**REF, "inject_as": "secretsFile"}]
    Path(path).write_text(yaml.safe_dump(doc))
    assert "secret_store.vault.secret_ref: expected no secret_ref" in problems(path)
