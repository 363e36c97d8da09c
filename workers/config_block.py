"""The configuration block: Layotto's configuration API over one store, and
per-stream subscriptions that send current values first, then every change.

Each subscription remembers what it last sent per key, so a notification
only sends what really changed, a deleted key is sent once with empty
content (Dapr's convention), and a Resync (the store may have missed
changes) re-reads and sends only the differences.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components.configuration.base import (
    DEFAULT,
    Changed,
    ConfigItem,
    ConfigurationStore,
    Notification,
    Scope,
)
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import SubscriptionBlock
from layotto.workers.subscriptions import Mailbox, open_request, opened

log = logging.getLogger("layotto.worker.configuration")

_Value = tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]


def _value(item: ConfigItem) -> _Value:
    return item.content, tuple(sorted(item.tags.items())), tuple(sorted(item.metadata.items()))


@dataclass
class _Watcher:
    mailbox: Mailbox
    scope: Scope
    keys: frozenset[str]  # empty: every key of the scope, also keys added later
    sent: dict[str, _Value] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wants(self, key: str) -> bool:
        return not self.keys or key in self.keys


class ConfigurationBlock(SubscriptionBlock):
    kind = "config_store"

    def __init__(self, spec: WorkerSpec, store: ConfigurationStore) -> None:
        super().__init__()
        self.component = store
        self.name = spec.name
        self.app_id = spec.app_id
        self._watchers: dict[int, _Watcher] = {}
        self._watchers_lock = threading.Lock()
        self._watch = store.watch(self._notified)

    def _scope(self, app_id: str, group: str, label: str) -> Scope:
        app = app_id or self.app_id
        if not app:
            raise CallError(
                Code.INVALID_ARGUMENT,
                f"app_id is empty in configuration store {self.name} "
                "(set it in the request or app.app_id in the config)",
            )
        return Scope(app, group.strip() or DEFAULT, label.strip() or DEFAULT)

    def _item(self, scope: Scope, item: ConfigItem) -> pb.ConfigurationItem:
        return pb.ConfigurationItem(
            key=item.key,
            content=item.content,
            group=scope.group,
            label=scope.label,
            tags=dict(item.tags),
            metadata=dict(item.metadata),
        )

    def get_configuration(self, payload: bytes) -> bytes:
        request = pb.GetConfigurationRequest.FromString(payload)
        scope = self._scope(request.app_id, request.group, request.label)
        items = self.component.get(scope, list(request.keys))
        return pb.GetConfigurationResponse(
            items=[self._item(scope, item) for item in items]
        ).SerializeToString()

    def save_configuration(self, payload: bytes) -> bytes:
        request = pb.SaveConfigurationRequest.FromString(payload)
        by_scope: dict[Scope, list[ConfigItem]] = {}
        for item in request.items:
            if not item.key:
                raise CallError(
                    Code.INVALID_ARGUMENT, f"key is empty in configuration store {self.name}"
                )
            scope = self._scope(request.app_id, item.group, item.label)
            by_scope.setdefault(scope, []).append(
                ConfigItem(item.key, item.content, dict(item.tags), dict(item.metadata))
            )
        for scope, items in by_scope.items():
            self.component.save(scope, items)
        return b""

    def delete_configuration(self, payload: bytes) -> bytes:
        request = pb.DeleteConfigurationRequest.FromString(payload)
        if not request.keys:
            # Unlike Get, an empty list does not mean "all": one missing
            # field must not wipe an application's configuration.
            raise CallError(
                Code.INVALID_ARGUMENT, f"keys is empty in configuration store {self.name}"
            )
        scope = self._scope(request.app_id, request.group, request.label)
        self.component.delete(scope, list(request.keys))
        return b""

    def open_subscription(self, payload: bytes) -> bytes:
        owner, key, raw = open_request(payload)
        request = pb.SubscribeConfigurationRequest.FromString(raw)
        scope = self._scope(request.app_id, request.group, request.label)
        mailbox = self.subscriptions.open(owner, key)
        watcher = _Watcher(mailbox, scope, frozenset(request.keys))
        with self._watchers_lock:
            self._watchers[mailbox.id] = watcher
        mailbox.on_close(lambda: self._forget(mailbox.id))
        try:
            self._refresh(watcher, None)  # current values first
        except Exception:
            self.subscriptions.close(mailbox.id)
            raise
        return opened(mailbox)

    def _forget(self, sub_id: int) -> None:
        with self._watchers_lock:
            self._watchers.pop(sub_id, None)

    def _notified(self, notification: Notification) -> None:
        with self._watchers_lock:
            watchers = list(self._watchers.values())
        for watcher in watchers:
            if isinstance(notification, Changed):
                if notification.scope != watcher.scope:
                    continue
                keys = [k for k in notification.keys if watcher.wants(k)]
                if not keys:
                    continue
                changed: list[str] | None = keys
            else:
                changed = None
            try:
                self._refresh(watcher, changed)
            except Exception as exc:
                # The store sends a Resync once it is reachable again.
                log.warning(
                    "configuration subscription %d not refreshed: %s", watcher.mailbox.id, exc
                )

    def _refresh(self, watcher: _Watcher, keys: Iterable[str] | None) -> None:
        """Send the watched keys (``None``: all of them) whose value differs
        from what this subscription last sent."""
        with watcher.lock:
            if keys is None:
                current = self.component.get(watcher.scope, sorted(watcher.keys))
                candidates = {i.key for i in current} | set(watcher.sent)
            else:
                candidates = set(keys)
                current = self.component.get(watcher.scope, sorted(candidates))
            by_key = {item.key: item for item in current}
            items = []
            for key in sorted(candidates):
                item = by_key.get(key)
                if item is None:
                    if watcher.sent.pop(key, None) is not None:
                        items.append(ConfigItem(key, ""))
                elif watcher.sent.get(key) != _value(item):
                    watcher.sent[key] = _value(item)
                    items.append(item)
            if items:
                response = pb.SubscribeConfigurationResponse(
                    store_name=self.name,
                    app_id=watcher.scope.app_id,
                    items=[self._item(watcher.scope, item) for item in items],
                )
                watcher.mailbox.put(response.SerializeToString())

    def close(self) -> None:
        self._watch.close()
        self.subscriptions.close_all()
        self.component.close()
