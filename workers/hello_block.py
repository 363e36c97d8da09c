"""The hello block: Layotto's SayHello."""

from __future__ import annotations

from layotto.boundary.specs import WorkerSpec
from layotto.components.hello.base import HelloService
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block


class HelloBlock(Block):
    kind = "hellos"

    def __init__(self, spec: WorkerSpec, service: HelloService) -> None:
        super().__init__()
        self.component = service

    def say_hello(self, payload: bytes) -> bytes:
        request = pb.SayHelloRequest.FromString(payload)
        answer = pb.SayHelloResponse(hello=self.component.say_hello(request.name))
        if request.HasField("data"):
            answer.data.CopyFrom(request.data)  # echoed: Layotto uses it for load tests
        return answer.SerializeToString()
