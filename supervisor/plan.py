"""What a reload must do, decided purely from the old and the new config.

A reload replaces every process so upgraded code takes effect, with one
exception: an in-memory component whose config did not change keeps its
worker, because its data lives in that process and would otherwise be lost.
Listener addresses cannot change on reload (clients would be cut off), and
the number of API processes cannot go down (the switch steers new
connections past the old API processes, which needs at least as many new
ones: docs/design.md, "Hot upgrade").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from layotto.boundary.config import ComponentConfig, Config
from layotto.components.registry import TYPES


@dataclass(frozen=True)
class ReloadPlan:
    start: tuple[ComponentConfig, ...]  # components that get new workers
    keep: tuple[str, ...]  # components whose workers carry over
    retire: tuple[str, ...]  # components whose current workers stop after the switch
    removed: tuple[str, ...]  # components gone from the config
    lost_data: tuple[str, ...]  # in-memory components restarted empty


class ReloadRefusedError(Exception):
    """The new config is valid but cannot be applied without a restart."""


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    refused = []
    if old.listeners != new.listeners:
        refused.append(
            f"listeners changed ({old.listeners.grpc}/{old.listeners.http} -> "
            f"{new.listeners.grpc}/{new.listeners.http}); listener addresses need a restart"
        )
    if old.run_dir() != new.run_dir():
        refused.append("runtime.run_dir changed; it needs a restart")
    if new.runtime.api_processes < old.runtime.api_processes:
        refused.append(
            f"runtime.api_processes lowered ({old.runtime.api_processes} -> "
            f"{new.runtime.api_processes}); fewer API processes need a restart"
        )
    if refused:
        raise ReloadRefusedError("; ".join(refused))
    start, keep, retire, lost = [], [], [], []
    for component in new.components:
        before = old.component(component.name)
        in_memory = TYPES[(component.kind, component.type)].single_process
        if before is not None and in_memory and before == component:
            keep.append(component.name)
            continue
        start.append(component)
        if before is not None:
            retire.append(component.name)
            if TYPES[(before.kind, before.type)].single_process:
                lost.append(component.name)
    names = {c.name for c in new.components}
    removed = tuple(c.name for c in old.components if c.name not in names)
    return ReloadPlan(tuple(start), tuple(keep), tuple(retire) + removed, removed, tuple(lost))


def with_fresh_start(plan: ReloadPlan, new: Config, names: Iterable[str]) -> ReloadPlan:
    """``plan``, with kept components ``names`` started anew instead: a kept
    component with no live worker (FATAL after a crash loop) would otherwise
    stay dead through every reload. Its data went with its process already."""
    restart = [name for name in plan.keep if name in set(names)]
    if not restart:
        return plan
    fresh = tuple(c for c in new.components if c.name in restart)
    return replace(
        plan,
        start=plan.start + fresh,
        keep=tuple(name for name in plan.keep if name not in restart),
        retire=plan.retire + tuple(restart),
    )
