"""Key prefix rules of Layotto (keyPrefix appid | name | none | a custom prefix)."""

from __future__ import annotations

import pytest

from layotto.components.errors import InvalidRequestError
from layotto.components.keys import lock_rules, resolve_prefix, sequencer_rules, state_rules


def test_defaults_per_block() -> None:
    assert lock_rules(None, "store", "app").stored("r") == "lock|||app||r"
    assert sequencer_rules(None, "store", "app").stored("k") == "sequencer|||app||k"
    assert state_rules(None, "store", "app").stored("k") == "k"


def test_empty_app_id_means_no_prefix() -> None:
    assert lock_rules(None, "store", "").stored("r") == "lock|||r"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("appid", "app||k"),
        ("name", "store||k"),
        ("none", "k"),
        ("custom", "custom||k"),
    ],
)
def test_prefix_rules(rule: str, expected: str) -> None:
    assert state_rules(rule, "store", "app").stored("k") == expected
    assert lock_rules(rule, "store", "app").stored("k") == "lock|||" + expected
    assert sequencer_rules(rule, "store", "app").stored("k") == "sequencer|||" + expected


def test_separator_rejected_in_key() -> None:
    for rules in (
        state_rules(None, "s", "a"),
        state_rules("none", "s", "a"),
        lock_rules(None, "s", "a"),
    ):
        with pytest.raises(InvalidRequestError):
            rules.stored("a||b")


def test_separator_rejected_in_prefix() -> None:
    with pytest.raises(InvalidRequestError):
        resolve_prefix("my||prefix", "none", "store", "app")
    with pytest.raises(InvalidRequestError):
        lock_rules("my||prefix", "store", "app")


@pytest.mark.parametrize("rule", ["appid", "name", "none", "custom"])
def test_user_strips_prefix(rule: str) -> None:
    for rules in (
        state_rules(rule, "store", "app"),
        lock_rules(rule, "store", "app"),
        sequencer_rules(rule, "store", "app"),
    ):
        assert rules.user(rules.stored("key")) == "key"


def test_user_keeps_unprefixed_text() -> None:
    assert state_rules("appid", "store", "app").user("plain") == "plain"
