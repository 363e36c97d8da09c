"""Which block serves each kind of component, and building one for a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from layotto.boundary.specs import WorkerSpec
from layotto.components import registry
from layotto.workers.bindings_block import BindingsBlock
from layotto.workers.block import Block
from layotto.workers.config_block import ConfigurationBlock
from layotto.workers.hello_block import HelloBlock
from layotto.workers.lock_block import LockBlock
from layotto.workers.pubsub_block import PubSubBlock
from layotto.workers.rpc_block import RpcBlock
from layotto.workers.secret_block import SecretBlock
from layotto.workers.sequencer_block import SequencerBlock
from layotto.workers.state_block import StateBlock

BLOCKS: dict[str, Callable[[WorkerSpec, Any], Block]] = {
    block.kind: block
    for block in (
        StateBlock,
        LockBlock,
        SequencerBlock,
        HelloBlock,
        ConfigurationBlock,
        PubSubBlock,
        RpcBlock,
        SecretBlock,
        BindingsBlock,
    )
}


def open_block(spec: WorkerSpec) -> Block:
    """Build the component and wrap it; raises component errors on bad metadata."""
    metadata = dict(spec.metadata)
    if spec.kind == "hellos" and spec.hello is not None:
        metadata.setdefault("hello", spec.hello)
    component = registry.build(
        spec.kind, spec.type, spec.name, metadata, spec.app_id, state_file=spec.state_file
    )
    try:
        return BLOCKS[spec.kind](spec, component)
    except BaseException:
        component.close()
        raise
