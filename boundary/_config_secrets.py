"""`secret_ref`: reading the secrets other components' configs name, at load.

The supervisor resolves them itself, with the very component code a secret
store's workers run (``components/secretstores``, standard library only: no
grpc, pynng or redis-py in the supervisor), so only the types it can read
without a worker may be named (`READABLE`). Every load reads them again: a
reload picks up a rotated secret, and the changed component is restarted.

What a problem says never includes a secret's value: a store that cannot be
read names its file, a missing secret its key, a value that the metadata key
refuses is "not shown".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from layotto.components import registry
from layotto.components.errors import BackendUnavailableError, MetadataError, NotFoundError

from ._config_model import ComponentConfig, SecretRef

READABLE = ("local.file", "local.env")

Fail = Callable[[str, str, str], None]  # (key path, expected, found)


def resolve(components: Sequence[ComponentConfig], fail: Fail) -> list[ComponentConfig]:
    """`components`, each with the secrets its refs name read into `secrets`."""
    stores = {c.name: c for c in components if c.kind == "secret_store"}
    opened: dict[str, Any] = {}
    result = []
    for component in components:
        secrets: dict[str, str] = {}
        for i, ref in enumerate(component.secret_refs):
            where = f"{component.kind}.{component.name}.secret_ref[{i}]"
            value = _read(ref, where, stores, opened, fail)
            if value is None:
                continue
            read = registry.TYPES[(component.kind, component.type)].readers.get(ref.inject_as)
            try:
                if read is not None:
                    read({ref.inject_as: value}, component.name)
            except MetadataError as exc:
                fail(f"{where}.inject_as", exc.expected, "the secret's value (not shown)")
                continue
            secrets[ref.inject_as] = value
        result.append(_with(component, secrets))
    for store in opened.values():
        store.close()
    return result


def _with(component: ComponentConfig, secrets: Mapping[str, str]) -> ComponentConfig:
    if not secrets:
        return component
    return ComponentConfig(
        component.kind,
        component.name,
        component.type,
        component.metadata,
        component.workers,
        component.hello,
        component.bigger_than,
        component.secret_refs,
        secrets,
    )


def _read(
    ref: SecretRef,
    where: str,
    stores: Mapping[str, ComponentConfig],
    opened: dict[str, Any],
    fail: Fail,
) -> str | None:
    store_config = stores.get(ref.name)
    if store_config is None:
        found = f"{ref.name!r}" + (f" (choose from {', '.join(stores)})" if stores else "")
        fail(f"{where}.name", "the name of a secret_store component of this file", found)
        return None
    if store_config.type not in READABLE:
        fail(
            f"{where}.name",
            f"a secret store of a type the supervisor reads ({', '.join(READABLE)})",
            f"{ref.name!r} of type {store_config.type!r}",
        )
        return None
    store = opened.get(ref.name)
    if store is None:
        try:
            store = registry.build(
                "secret_store", store_config.type, ref.name, store_config.metadata, ""
            )
        except BackendUnavailableError as exc:  # it names the file, not its content
            fail(f"{where}.name", "a secret store the supervisor can read", str(exc))
            return None
        opened[ref.name] = store
    try:
        values = store.get(ref.key)
    except NotFoundError:
        fail(f"{where}.key", f"a secret of secret store {ref.name!r}", f"{ref.key!r} (not found)")
        return None
    sub_key = ref.sub_key or ref.key
    if sub_key not in values:
        fail(
            f"{where}.sub_key",
            f"the name of a value of secret {ref.key!r}",
            f"{sub_key!r} (not found)",
        )
        return None
    value: str = values[sub_key]
    return value
