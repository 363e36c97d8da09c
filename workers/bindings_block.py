"""The bindings block: Layotto's InvokeBinding over one output binding."""

from __future__ import annotations

from layotto.boundary.specs import WorkerSpec
from layotto.components.bindings.base import OutputBinding, check_operation
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block


class BindingsBlock(Block):
    kind = "bindings"

    def __init__(self, spec: WorkerSpec, binding: OutputBinding) -> None:
        super().__init__()
        self.component = binding
        self.name = spec.name

    def invoke_binding(self, payload: bytes) -> bytes:
        request = pb.InvokeBindingRequest.FromString(payload)
        check_operation(self.name, request.operation, self.component.operations)
        answer = self.component.invoke(request.operation, request.data, dict(request.metadata))
        return pb.InvokeBindingResponse(
            data=answer.data, metadata=dict(answer.metadata)
        ).SerializeToString()
