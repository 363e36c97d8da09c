"""Dapr's ``bindings.localstorage``: files under ``rootPath``.

Operations: create (request metadata ``fileName``, or a generated name that
the response's metadata ``fileName`` returns), get, list (a JSON array of the
files' names, relative to the root) and delete. The data is written and read
as given, bytes for bytes.

Names are confined to the root: an absolute name, a ``..`` part, or a name
whose path resolves outside the root through a symlink is refused, and files
are opened with ``O_NOFOLLOW``, so a link put in place of the file after the
check is not followed either.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress

from layotto.components.bindings import settings
from layotto.components.bindings.base import BindingResponse, required
from layotto.components.errors import BackendUnavailableError, InvalidRequestError

_FILE_NAME = "fileName"


class LocalStorageBinding:
    operations = ("create", "get", "list", "delete")

    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._root = settings.root_path(metadata, component)
        # If it cannot be made, the health check reports it and a call says what failed.
        with suppress(OSError):
            os.makedirs(self._root, mode=0o700, exist_ok=True)

    def invoke(self, operation: str, data: bytes, metadata: Mapping[str, str]) -> BindingResponse:
        if operation == "list":
            return BindingResponse(json.dumps(self._list()).encode())
        if operation == "create":
            name = metadata.get(_FILE_NAME) or uuid.uuid4().hex
            path = self._confined(name)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            with _translated(name):
                fd = os.open(path, flags, 0o600)
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
            return BindingResponse(metadata={_FILE_NAME: name})
        name = required(metadata, _FILE_NAME, operation)
        path = self._confined(name)
        with _translated(name):
            if operation == "get":
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as file:
                    return BindingResponse(file.read())
            os.unlink(path)
            return BindingResponse()

    def _confined(self, name: str) -> str:
        """The path of ``name`` under the root; refuses one that could leave it."""
        if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
            raise InvalidRequestError(
                f"fileName {name!r} is refused: names are relative to the binding's root, "
                "without '..'"
            )
        root = os.path.realpath(self._root)
        path = os.path.join(root, name)
        resolved = os.path.realpath(path)
        if os.path.commonpath([root, resolved]) != root or resolved == root:
            raise InvalidRequestError(
                f"fileName {name!r} is refused: it resolves outside the binding's root"
            )
        return path

    def _list(self) -> list[str]:
        names: list[str] = []
        root = os.path.realpath(self._root)
        for directory, _, files in os.walk(root):
            names += (os.path.relpath(os.path.join(directory, f), root) for f in files)
        return sorted(names)

    def ping(self) -> None:
        if not os.path.isdir(self._root):
            raise BackendUnavailableError(f"localstorage root {self._root} is not a directory")
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise BackendUnavailableError(f"localstorage root {self._root} is not writable")

    def close(self) -> None:
        return None


@contextmanager
def _translated(name: str) -> Iterator[None]:
    """File errors as component errors: a missing file or a link is the caller's mistake."""
    try:
        yield
    except FileNotFoundError as exc:
        raise InvalidRequestError(f"file {name!r} not found") from exc
    except IsADirectoryError as exc:
        raise InvalidRequestError(f"{name!r} is a directory") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidRequestError(f"fileName {name!r} is refused: it is a link") from exc
        raise BackendUnavailableError(f"localstorage {name!r}: {exc}") from exc


def create(name: str, metadata: Mapping[str, str], app_id: str) -> LocalStorageBinding:
    return LocalStorageBinding(metadata, name)
