"""``local.env``: secrets from the process environment, as Dapr's local env store.

Only variables whose name starts with ``prefix`` are visible (no prefix: every
variable). As in Dapr, the prefix is *stripped*: with ``prefix: APP_``, the
variable ``APP_DB_PASSWORD`` is the secret ``DB_PASSWORD``, whose values are
``{"DB_PASSWORD": <value>}``. A key is looked up as given (case-sensitive).

The environment is the one of the process that reads it: the worker for
GetSecret, the supervisor for ``secret_ref`` (workers are started with the
supervisor's environment, minus nothing it adds), so both see the same
variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from layotto.components.secretstores.base import SecretNotFoundError

PREFIX_KEY = "prefix"


class LocalEnvSecretStore:
    def __init__(self, name: str, prefix: str, environ: Mapping[str, str] | None = None) -> None:
        self._name = name
        self._prefix = prefix
        self._environ = os.environ if environ is None else environ

    def get(self, key: str) -> Mapping[str, str]:
        value = self._environ.get(self._prefix + key) if key else None
        if value is None:
            raise SecretNotFoundError(self._name, key)
        return {key: value}

    def bulk_get(self) -> Mapping[str, Mapping[str, str]]:
        n = len(self._prefix)
        return {
            name[n:]: {name[n:]: value}
            for name, value in self._environ.items()
            if name.startswith(self._prefix) and len(name) > n
        }

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def create(name: str, metadata: Mapping[str, str], app_id: str) -> LocalEnvSecretStore:
    return LocalEnvSecretStore(name, metadata.get(PREFIX_KEY, ""))
