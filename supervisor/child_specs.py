"""Building the children of a generation: each one's spec and its table entry.

Pure: the arbiter decides which children exist (numbering workers, picking
the zygote they fork from); this module says what each of them is told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layotto.boundary.addresses import state_file, worker_address
from layotto.boundary.config import ComponentConfig, Config
from layotto.boundary.specs import ApiSpec, WorkerSpec, ZygoteSpec
from layotto.supervisor import lifecycle as lc
from layotto.supervisor.children import Child


def zygote_spec(config: Config, generation: int) -> ZygoteSpec:
    return ZygoteSpec(
        generation,
        config.runtime.log_level,
        # the backends to preload: those this generation's workers run
        tuple(sorted({(c.kind, c.type) for c in config.components})),
    )


def _app_callback(config: Config) -> str | None:
    app = config.app
    return f"{app.grpc_callback_host}:{app.grpc_callback_port}" if app.grpc_callback_port else None


def worker_child(
    config: Config,
    run_dir: str,
    component: ComponentConfig,
    *,
    generation: int,
    slot: int,
    zygote_id: str,
) -> Child:
    """Replica ``slot`` of ``component``; ``config`` gives what all workers share."""
    address = worker_address(run_dir, component.name, slot)
    spec = WorkerSpec(
        kind=component.kind,
        name=component.name,
        type=component.type,
        metadata=component.worker_metadata(),  # secret_ref values injected
        app_id=config.app.app_id,
        slot=slot,
        address=address,
        log_level=config.runtime.log_level,
        hello=component.hello,
        bigger_than=component.bigger_than,
        app_callback=_app_callback(config),
        state_file=state_file(run_dir, component.name),
        max_event_size=config.runtime.max_event_size,
    )
    return Child(
        f"{component.name}#{slot}",
        "worker",
        generation,
        spec,
        lc.Proc(config.runtime.start_timeout),
        component,
        address,
        forked_from=zygote_id,
    )


def zygote_child(config: Config, generation: int) -> Child:
    return Child(
        f"zygote@{generation}",
        "zygote",
        generation,
        zygote_spec(config, generation),
        lc.Proc(config.runtime.start_timeout),
    )


def api_child(
    config: Config,
    run_dir: str,
    routing: Mapping[str, Sequence[str]],
    *,
    generation: int,
    index: int,
    zygote_id: str,
) -> Child:
    """API process ``index`` of ``generation``, routing each component to ``routing``'s workers."""
    return Child(
        f"api@{generation}#{index}",
        "api",
        generation,
        ApiSpec(config, run_dir, generation, routing, index=index),
        lc.Proc(config.runtime.start_timeout),
        forked_from=zygote_id,
    )
