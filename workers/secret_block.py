"""The secret block: Layotto's GetSecret and GetBulkSecret over one store."""

from __future__ import annotations

from layotto.boundary.specs import WorkerSpec
from layotto.components.secretstores.base import SecretStore
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block


class SecretBlock(Block):
    kind = "secret_store"

    def __init__(self, spec: WorkerSpec, store: SecretStore) -> None:
        super().__init__()
        self.component = store

    def get_secret(self, payload: bytes) -> bytes:
        request = pb.GetSecretRequest.FromString(payload)
        values = self.component.get(request.key)  # SecretNotFoundError: NOT_FOUND
        return pb.GetSecretResponse(data=dict(values)).SerializeToString()

    def get_bulk_secret(self, payload: bytes) -> bytes:
        pb.GetBulkSecretRequest.FromString(payload)
        answer = pb.GetBulkSecretResponse()
        for key, values in self.component.bulk_get().items():
            answer.data[key].secrets.update(values)
        return answer.SerializeToString()
