"""The hot upgrade's steering, checked against a model of the kernel's reuseport group.

The model follows net/core/sock_reuseport.c: a listener joins at the end of
the array, one that leaves is replaced in its slot by the last one, and a
program's index past the end falls back to a hash over every member. The
switch attaches "ret m" (m: old members in the group); the claim
(api/reuseport.py) is that, whatever order the old members leave in, a new
connection goes only to a new member while k >= m new members listen.
"""

from __future__ import annotations

import itertools

import pytest


def leave(group: list[str], member: str) -> list[str]:
    """``__reuseport_detach_sock``: the last member fills the slot."""
    after = list(group)
    slot = after.index(member)
    after[slot] = after[-1]
    after.pop()
    return after


def receivers(group: list[str], index: int) -> set[str]:
    """Who may get a new connection under "ret ``index``" (``run_bpf_filter``,
    then the hash over every member when the index is past the end)."""
    return {group[index]} if index < len(group) else set(group)


def unsafe_orders(old: int, new: int) -> list[tuple[tuple[str, ...], list[str]]]:
    """Every order of the old members' departures in which a new connection
    could reach an old (draining) member, with the group at that moment."""
    olds = [f"o{n}" for n in range(old)]
    start = olds + [f"n{n}" for n in range(new)]
    found = []
    for order in itertools.permutations(olds):
        group = start
        for gone in (None, *order):
            if gone is not None:
                group = leave(group, gone)
            if any(r.startswith("o") for r in receivers(group, old)):
                found.append((order, group))
                break
    return found


@pytest.mark.parametrize(("old", "new"), [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3), (3, 5)])
def test_steering_to_the_first_new_member_never_reaches_an_old_one(old: int, new: int) -> None:
    assert unsafe_orders(old, new) == []


@pytest.mark.parametrize(("old", "new"), [(2, 1), (3, 2)])
def test_fewer_new_members_than_old_ones_could_reach_a_draining_one(old: int, new: int) -> None:
    """Why a reload may not lower runtime.api_processes (supervisor/plan.py)."""
    assert unsafe_orders(old, new)


def test_steady_state_a_dead_first_member_is_replaced_by_a_live_one_at_once() -> None:
    group = leave(["a", "b"], "a")
    assert receivers(group, 0) == {"b"}
    assert receivers([*group, "a again"], 0) == {"b"}  # the restarted one stands by
