"""Key rewriting, as Layotto does it (its keyPrefix rules: appid, name, none, or a prefix).

State keys default to no prefix; lock and sequencer keys default to the app id
and always carry a block marker (``lock|||``, ``sequencer|||``) so the three
blocks never collide in one Redis. ``||`` separates prefix and key, so it may
appear in neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from layotto.components.errors import InvalidRequestError, MetadataError
from layotto.components.metadata import of_component

SEPARATOR = "||"
KEY_PREFIX = "keyPrefix"
LOCK_MARKER = "lock|||"
SEQUENCER_MARKER = "sequencer|||"


@dataclass(frozen=True)
class KeyRules:
    """How one component turns a user key into a stored key."""

    marker: str
    prefix: str

    def stored(self, key: str) -> str:
        if SEPARATOR in key:
            raise InvalidRequestError(f"key {key!r} must not contain {SEPARATOR!r}")
        if not self.prefix:
            return f"{self.marker}{key}"
        return f"{self.marker}{self.prefix}{SEPARATOR}{key}"

    def user(self, stored: str) -> str:
        """Inverse of ``stored`` (used to strip prefixes from bulk answers)."""
        rest = stored.removeprefix(self.marker)
        if self.prefix:
            return rest.split(SEPARATOR, 1)[1] if SEPARATOR in rest else rest
        return rest


def resolve_prefix(key_prefix: str | None, default: str, store_name: str, app_id: str) -> str:
    """Turn the ``keyPrefix`` metadata value into the literal prefix."""
    rule = key_prefix if key_prefix is not None else default
    if rule == "appid":
        return app_id
    if rule == "name":
        return store_name
    if rule == "none":
        return ""
    if SEPARATOR in rule:
        expected = f"appid, name, none or a prefix without {SEPARATOR!r}"
        raise MetadataError(of_component(store_name), KEY_PREFIX, expected, rule)
    return rule


def check_prefix(metadata: Mapping[str, str], component: str) -> str:
    """``keyPrefix`` read as every block reads it (config validation runs this)."""
    return resolve_prefix(metadata.get(KEY_PREFIX), "none", component, "")


def state_rules(key_prefix: str | None, store_name: str, app_id: str) -> KeyRules:
    return KeyRules("", resolve_prefix(key_prefix, "none", store_name, app_id))


def lock_rules(key_prefix: str | None, store_name: str, app_id: str) -> KeyRules:
    return KeyRules(LOCK_MARKER, resolve_prefix(key_prefix, "appid", store_name, app_id))


def sequencer_rules(key_prefix: str | None, store_name: str, app_id: str) -> KeyRules:
    return KeyRules(SEQUENCER_MARKER, resolve_prefix(key_prefix, "appid", store_name, app_id))
