"""What the output-binding suites share: opening a binding as a worker does, and one call."""

from __future__ import annotations

from collections.abc import Mapping

from layotto.boundary.specs import WorkerSpec
from layotto.proto import runtime_pb2 as pb
from layotto.workers.bindings_block import BindingsBlock
from layotto.workers.block_table import open_block


def open_binding(type_: str, name: str, metadata: Mapping[str, str]) -> BindingsBlock:
    address = f"ipc:///tmp/layotto-test/w-{name}-0.ipc"
    block = open_block(WorkerSpec("bindings", name, type_, metadata, "app", 0, address))
    assert isinstance(block, BindingsBlock)
    return block


def invoke(
    block: BindingsBlock, operation: str, data: bytes = b"", **metadata: str
) -> pb.InvokeBindingResponse:
    request = pb.InvokeBindingRequest(
        name=block.name, operation=operation, data=data, metadata=metadata
    )
    return pb.InvokeBindingResponse.FromString(block.invoke_binding(request.SerializeToString()))
