"""Secret store conformance (Dapr's secret store suite: get, bulk get, missing
key), run on both local types, plus each type's own semantics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from layotto.components.errors import BackendUnavailableError, MetadataError, NotFoundError
from layotto.components.registry import TYPES, build
from layotto.components.secretstores.base import SecretStore
from layotto.components.secretstores.local_env import LocalEnvSecretStore

SECRETS = {"conftestsecret": "abcd", "secondsecret": "efgh"}


@pytest.fixture(params=["local.file", "local.env"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretStore]:
    if request.param == "local.file":
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps(SECRETS))
        built: SecretStore = build(
            "secret_store", "local.file", "s", {"secretsFile": str(path)}, "app"
        )
    else:
        environ = {"CONF_" + k: v for k, v in SECRETS.items()} | {"OTHER": "x"}
        built = LocalEnvSecretStore("s", "CONF_", environ)
    yield built
    built.close()


def test_get(store: SecretStore) -> None:
    assert store.get("conftestsecret") == {"conftestsecret": "abcd"}
    assert store.get("secondsecret") == {"secondsecret": "efgh"}


def test_bulk_get(store: SecretStore) -> None:
    assert store.bulk_get() == {k: {k: v} for k, v in SECRETS.items()}


def test_missing_key_is_not_found(store: SecretStore) -> None:
    with pytest.raises(NotFoundError, match="'nosuchkey' not found in secret store 's'"):
        store.get("nosuchkey")


def test_ping(store: SecretStore) -> None:
    store.ping()


NESTED = {"a": "1", "db": {"user": "u", "deep": {"pw": "p"}}, "n": 5}


def _file_store(tmp_path: Path, doc: object, **metadata: str) -> SecretStore:
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(doc))
    store: SecretStore = build(
        "secret_store", "local.file", "s", {"secretsFile": str(path), **metadata}, "app"
    )
    return store


def test_file_flattens_nested_objects(tmp_path: Path) -> None:
    store = _file_store(tmp_path, NESTED)
    assert store.bulk_get() == {
        "a": {"a": "1"},
        "db:user": {"db:user": "u"},
        "db:deep:pw": {"db:deep:pw": "p"},
        "n": {"n": "5"},
    }
    assert _file_store(tmp_path, NESTED, nestedSeparator=".").get("db.deep.pw") == {
        "db.deep.pw": "p"
    }


def test_file_multi_valued(tmp_path: Path) -> None:
    store = _file_store(tmp_path, NESTED, multiValued="true")
    assert store.get("db") == {"user": "u", "deep:pw": "p"}
    assert store.get("a") == {"a": "1"}
    with pytest.raises(NotFoundError):
        store.get("db:user")


def test_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    store = _file_store(tmp_path, {"k": "old"})
    (tmp_path / "nested.json").write_text(json.dumps({"k": "rotated!"}))
    store.ping()
    assert store.get("k") == {"k": "rotated!"}


def test_file_errors_name_the_file_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"k": "hush-hush-value", oops}')
    with pytest.raises(BackendUnavailableError) as caught:
        build("secret_store", "local.file", "s", {"secretsFile": str(path)}, "app")
    assert "bad.json" in str(caught.value)
    assert "hush-hush" not in str(caught.value)
    with pytest.raises(BackendUnavailableError, match="cannot read"):
        build("secret_store", "local.file", "s", {"secretsFile": str(tmp_path / "no")}, "app")


def test_env_strips_the_prefix_and_hides_other_variables() -> None:
    store = LocalEnvSecretStore("s", "APP_", {"APP_DB": "x", "HOME": "/h", "APP_": "e"})
    assert store.bulk_get() == {"DB": {"DB": "x"}}
    with pytest.raises(NotFoundError):
        store.get("HOME")
    assert LocalEnvSecretStore("s", "", {"HOME": "/h"}).get("HOME") == {"HOME": "/h"}


def test_file_metadata_readers() -> None:
    readers = TYPES[("secret_store", "local.file")].readers
    with pytest.raises(MetadataError):
        readers["multiValued"]({"multiValued": "perhaps"}, "s")
    with pytest.raises(MetadataError):
        readers["nestedSeparator"]({"nestedSeparator": ""}, "s")


def test_file_health_follows_the_file(tmp_path: Path) -> None:
    """The worker's health indicator pings: DOWN while the file is gone or
    broken (the last good secrets are still served), UP when it is back."""
    store = _file_store(tmp_path, {"k": "v"})
    path = tmp_path / "nested.json"
    path.unlink()
    with pytest.raises(BackendUnavailableError, match="cannot read"):
        store.ping()
    path.write_text("{broken")
    with pytest.raises(BackendUnavailableError, match="not a JSON object"):
        store.ping()
    assert store.get("k") == {"k": "v"}
    path.write_text(json.dumps({"k": "back"}))
    store.ping()
    assert store.get("k") == {"k": "back"}
