"""The configuration building block: data model and the contract every backend meets.

Data model (Layotto §5.4): (app_id, group, label, key) → content + tags +
metadata. The worker replaces a blank group or label by ``default`` before a
store sees it, so stores never guess.

Stores push *which* keys changed, never values: the worker re-reads what its
subscribers watch, so a notification that arrives late or twice is harmless,
and a ``Resync`` (the store may have missed changes, e.g. after a reconnect)
makes it re-read everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT = "default"


@dataclass(frozen=True)
class Scope:
    """Where keys live: one (app_id, group, label) triple, already defaulted."""

    app_id: str
    group: str
    label: str


@dataclass(frozen=True)
class ConfigItem:
    key: str
    content: str
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Changed:
    """These keys of this scope were saved or deleted (possibly by another sidecar)."""

    scope: Scope
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Resync:
    """Changes may have been missed: every watched key must be re-read."""


Notification = Changed | Resync


class Watch(Protocol):
    def close(self) -> None: ...


class ConfigurationStore(Protocol):
    """Blocking and thread-safe."""

    def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        """The items of ``keys`` that exist (missing keys are left out, not an
        error); every item of the scope when ``keys`` is empty. Sorted by key."""
        ...

    def save(self, scope: Scope, items: Sequence[ConfigItem]) -> None:
        """Create or replace every item, atomically, then notify watchers."""
        ...

    def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        """Remove these keys (missing ones are ignored), then notify watchers."""
        ...

    def watch(self, notify: Callable[[Notification], None]) -> Watch:
        """Call ``notify`` (from any thread) after every change in any scope,
        including changes made by other processes on a shared backend."""
        ...

    def ping(self) -> None: ...

    def close(self) -> None: ...


Callback = Callable[[Notification], None]


class WatchHandle:
    """One registration; the object itself is the key, so closing it can only
    ever remove this registration (the same callback may be watched twice)."""

    def __init__(self, owner: Watchers) -> None:
        self._owner = owner

    def close(self) -> None:
        self._owner.remove(self)


class Watchers:
    """The callbacks of one store's watches (every backend keeps its watches in one)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._callbacks: dict[WatchHandle, Callback] = {}

    def add(self, notify: Callback) -> WatchHandle:
        watch = WatchHandle(self)
        with self._mutex:
            self._callbacks[watch] = notify
        return watch

    def remove(self, watch: WatchHandle) -> None:
        with self._mutex:
            self._callbacks.pop(watch, None)

    def clear(self) -> None:
        with self._mutex:
            self._callbacks.clear()

    def call(
        self, notification: Notification, among: Collection[WatchHandle] | None = None
    ) -> None:
        """Call every watcher (or those of ``among`` still open), outside the lock.

        A watch closed while a call is under way may still get that one call.
        A failing watcher is logged: it must not fail the save that notified
        it, nor keep the others from hearing about it.
        """
        with self._mutex:
            callbacks = [
                notify
                for watch, notify in self._callbacks.items()
                if among is None or watch in among
            ]
        for notify in callbacks:
            try:
                notify(notification)
            except Exception:
                log.exception("configuration watcher failed on %r", notification)


def unique(keys: Sequence[str]) -> tuple[str, ...]:
    """``keys`` without repeats, in their first order."""
    return tuple(dict.fromkeys(keys))
