"""In-memory configuration store: the reference backend for the conformance suite.

One dict of scopes under one ``threading.Lock``. Watchers are called in the
thread that saved or deleted, after the lock is released, so a watcher may
read the store (or close its watch) from inside its callback. It never sends
``Resync``: nothing can be missed inside one process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from layotto.components.configuration.base import (
    Callback,
    Changed,
    ConfigItem,
    Scope,
    Watchers,
    WatchHandle,
    unique,
)


def _copy(item: ConfigItem) -> ConfigItem:
    # ConfigItem is frozen but its mappings may be a caller's mutable dicts.
    return ConfigItem(item.key, item.content, dict(item.tags), dict(item.metadata))


class MemoryConfigurationStore:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._scopes: dict[Scope, dict[str, ConfigItem]] = {}
        self._watchers = Watchers()

    def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        with self._mutex:
            items = self._scopes.get(scope, {})
            if keys:
                found = [items[key] for key in unique(keys) if key in items]
            else:
                found = list(items.values())
        return sorted((_copy(item) for item in found), key=lambda item: item.key)

    def save(self, scope: Scope, items: Sequence[ConfigItem]) -> None:
        if not items:
            return
        with self._mutex:
            stored = self._scopes.setdefault(scope, {})
            for item in items:
                stored[item.key] = _copy(item)
        self._watchers.call(Changed(scope, unique([item.key for item in items])))

    def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._mutex:
            stored = self._scopes.get(scope, {})
            for key in keys:
                stored.pop(key, None)
            if not stored:
                self._scopes.pop(scope, None)  # an emptied scope must not linger forever
        self._watchers.call(Changed(scope, unique(keys)))

    def watch(self, notify: Callback) -> WatchHandle:
        return self._watchers.add(notify)

    def ping(self) -> None:
        pass

    def close(self) -> None:
        self._watchers.clear()
        with self._mutex:
            self._scopes.clear()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> MemoryConfigurationStore:
    return MemoryConfigurationStore()
