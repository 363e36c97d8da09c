"""``local.file``: secrets from a JSON file, with Dapr's local file store semantics.

The file is read at open and again by ``ping`` when it changed, so an edited
file is served without a restart. A file that is missing or not a JSON object
is the backend being unavailable: the worker waits for it at start, and its
health is DOWN (naming the file, never its content) while it stays so, the
last good secrets still being served. Nested objects:

- ``multiValued: false`` (default): every leaf becomes one secret, its key the
  path joined by ``nestedSeparator`` (default ``:``), its values
  ``{key: value}``. ``{"db": {"user": "u"}}`` gives secret ``db:user`` =
  ``{"db:user": "u"}``.
- ``multiValued: true``: each top-level key is one secret whose values are its
  object flattened (nested levels joined by the separator); a top-level
  scalar is ``{key: value}``.

Values that are not strings (numbers, booleans, null) are given as JSON text,
as Dapr does.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from layotto.components.errors import BackendUnavailableError, MetadataError
from layotto.components.metadata import of_component, parse_bool
from layotto.components.secretstores.base import SecretNotFoundError

FILE_KEY = "secretsFile"
SEPARATOR_KEY = "nestedSeparator"
MULTI_KEY = "multiValued"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _flatten(value: Any, prefix: str, separator: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}{separator}{key}" if prefix else str(key), separator, out)
    else:
        out[prefix] = _text(value)


def secrets_of(document: Any, separator: str, multi_valued: bool) -> dict[str, dict[str, str]]:
    """A parsed JSON document as key -> values (the semantics above)."""
    if not isinstance(document, dict):
        raise ValueError("the secrets file must hold a JSON object")  # noqa: TRY004
    if not multi_valued:
        flat: dict[str, str] = {}
        _flatten(document, "", separator, flat)
        return {key: {key: value} for key, value in flat.items()}
    result: dict[str, dict[str, str]] = {}
    for key, value in document.items():
        values: dict[str, str] = {}
        if isinstance(value, dict):
            _flatten(value, "", separator, values)
        else:
            values[key] = _text(value)
        result[key] = values
    return result


def read_path(metadata: Mapping[str, str], component: str) -> str:
    """``secretsFile``: required, non-empty (made absolute at config load)."""
    path = metadata.get(FILE_KEY, "")
    if not path.strip():
        raise MetadataError(of_component(component), FILE_KEY, "a file path", path)
    return path


def read_separator(metadata: Mapping[str, str], component: str) -> str:
    separator = metadata.get(SEPARATOR_KEY, ":")
    if not separator:
        raise MetadataError(of_component(component), SEPARATOR_KEY, "a non-empty string", "")
    return separator


def read_multi_valued(metadata: Mapping[str, str], component: str) -> bool:
    return parse_bool(metadata, MULTI_KEY, False, component)


class LocalFileSecretStore:
    def __init__(self, name: str, path: str, separator: str, multi_valued: bool) -> None:
        self._name = name
        self._path = path
        self._separator = separator
        self._multi_valued = multi_valued
        self._mutex = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._secrets: dict[str, dict[str, str]] = {}
        self._reload()

    def _reload(self) -> None:
        """Read the file again if it changed. Errors name the file, never a value."""
        try:
            st = os.stat(self._path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp:
                return
            with open(self._path, encoding="utf-8") as f:
                document = json.load(f)
            secrets = secrets_of(document, self._separator, self._multi_valued)
        except OSError as exc:
            raise BackendUnavailableError(
                f"secret store {self._name!r}: cannot read {self._path}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError as exc:  # its message would quote a byte of the file
            raise BackendUnavailableError(
                f"secret store {self._name!r}: {self._path} is not a JSON object of secrets "
                f"(not UTF-8 at byte {exc.start})"
            ) from None
        except ValueError as exc:  # json's messages quote no content, only a position
            raise BackendUnavailableError(
                f"secret store {self._name!r}: {self._path} is not a JSON object of secrets "
                f"({str(exc)[:80]})"
            ) from None
        self._secrets, self._stamp = secrets, stamp

    def get(self, key: str) -> Mapping[str, str]:
        with self._mutex:
            found = self._secrets.get(key)
        if found is None:
            raise SecretNotFoundError(self._name, key)
        return dict(found)

    def bulk_get(self) -> Mapping[str, Mapping[str, str]]:
        with self._mutex:
            return {key: dict(values) for key, values in self._secrets.items()}

    def ping(self) -> None:
        with self._mutex:
            self._reload()

    def close(self) -> None:
        pass


def create(name: str, metadata: Mapping[str, str], app_id: str) -> LocalFileSecretStore:
    return LocalFileSecretStore(
        name,
        read_path(metadata, name),
        read_separator(metadata, name),
        read_multi_valued(metadata, name),
    )
