"""The supervisor's table: every child, which generation serves, and the routing.

What ``layotto status``, the actuator and the operations read. It changes
only through the methods here (and the arbiter's loop, which owns each
child's lifecycle state), so an operation never writes a field between two
awaits: it asks for one named change. Each change wakes the waiters of
``Arbiter.wait_until``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from layotto.boundary.config import ComponentConfig, Config
from layotto.boundary.specs import ApiSpec
from layotto.supervisor import child_specs
from layotto.supervisor.children import Child


class ChildTable:
    def __init__(self, config: Config, run_dir: str) -> None:
        self.config = config
        self.run_dir = run_dir
        self.children: dict[str, Child] = {}
        self.generation = 1
        # component -> worker addresses the current API routes to
        self.routing: dict[str, list[str]] = {}
        self.last_reload: dict[str, Any] | None = None
        self._worker_numbers: dict[str, itertools.count[int]] = {}
        self._changed = trio.Event()
        self.zygote_id = self.new_zygote(1).id
        for component in config.components:
            self.routing[component.name] = [
                self.new_worker(component, 1).address for _ in range(component.workers)
            ]
        # the serving generation's API processes, all on the gRPC port
        self.api_ids = [
            self.new_api(1, n, config, self.routing).id for n in range(config.runtime.api_processes)
        ]

    # -- reading --------------------------------------------------------------------

    @property
    def apis(self) -> list[Child]:
        """The API processes of the generation that serves, whatever their state."""
        return [self.children[i] for i in self.api_ids]

    def workers_of(self, component: str) -> list[Child]:
        addresses = self.routing.get(component, [])
        return [c for c in self.children.values() if c.address in addresses]

    def unrouted_workers(self, before: int) -> list[Child]:
        """Running workers older than generation ``before`` that no component
        routes to: left by a scale-down whose ``retired`` report never came
        (scale waits for it only so long). A reload stops them with the old
        generation."""
        routed = {address for addresses in self.routing.values() for address in addresses}
        return [
            c
            for c in self.children.values()
            if c.role == "worker"
            and c.generation < before
            and c.address not in routed
            and not c.down
        ]

    def zygote_of(self, child: Child) -> Child | None:
        """The zygote to fork ``child`` from: its generation's, or the serving
        one's once that is gone (a kept worker restarting after a reload)."""
        return self.children.get(child.forked_from) or self.children.get(self.zygote_id)

    def _notify(self) -> None:
        """Wake whoever waits for a condition over the table (``Arbiter.wait_until``)."""
        self._changed.set()
        self._changed = trio.Event()

    # -- adding and dropping children ---------------------------------------------

    def _add(self, child: Child) -> Child:
        self.children[child.id] = child
        self._notify()
        return child

    def new_worker(
        self, component: ComponentConfig, generation: int, zygote_id: str | None = None
    ) -> Child:
        slot = next(self._worker_numbers.setdefault(component.name, itertools.count()))
        return self._add(
            child_specs.worker_child(
                self.config,
                self.run_dir,
                component,
                generation=generation,
                slot=slot,
                zygote_id=zygote_id or self.zygote_id,
            )
        )

    def new_zygote(self, generation: int, config: Config | None = None) -> Child:
        return self._add(child_specs.zygote_child(config or self.config, generation))

    def new_api(
        self,
        generation: int,
        index: int,
        config: Config,
        routing: Mapping[str, Sequence[str]],
        zygote_id: str | None = None,
    ) -> Child:
        return self._add(
            child_specs.api_child(
                config,
                self.run_dir,
                routing,
                generation=generation,
                index=index,
                zygote_id=zygote_id or self.zygote_id,
            )
        )

    def forget(self, children: list[Child]) -> None:
        """Drop stopped children that no longer belong to the sidecar."""
        for child in children:
            if child.down and child.id not in self.api_ids:
                self.children.pop(child.id, None)
        self._notify()

    # -- what operations change ---------------------------------------------------

    def switch_generation(
        self,
        generation: int,
        config: Config,
        *,
        apis: Sequence[Child],
        zygote: Child,
        routing: dict[str, list[str]],
    ) -> None:
        """From now on ``apis`` (and their zygote) serve, with ``config``."""
        self.config, self.generation = config, generation
        self.api_ids, self.zygote_id, self.routing = [a.id for a in apis], zygote.id, routing
        self._notify()

    def set_steering(self, apis: Sequence[Child], steer_to: int) -> None:
        """The reuseport index ``apis`` attach when they (re)start (api/reuseport.py)."""
        for api in apis:
            assert isinstance(api.spec, ApiSpec)
            api.spec = dataclasses.replace(api.spec, steer_to=steer_to)
        self._notify()

    def record_reload(self, outcome: dict[str, Any]) -> None:
        """What ``layotto status`` and the actuator report as the last reload."""
        self.last_reload = outcome
        self._notify()

    def set_route(self, component: str, addresses: list[str]) -> None:
        """Route ``component`` to ``addresses``, also in the serving APIs' specs,
        so that an API process restarted later starts with it."""
        self.routing[component] = list(addresses)
        for api in self.apis:
            assert isinstance(api.spec, ApiSpec)
            workers = {**api.spec.workers, component: tuple(addresses)}
            api.spec = dataclasses.replace(api.spec, workers=workers)
        self._notify()
