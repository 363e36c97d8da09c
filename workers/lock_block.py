"""The lock block: Layotto's lock API over one store, keys prefixed as Layotto does."""

from __future__ import annotations

from layotto.boundary.specs import WorkerSpec
from layotto.components import keys
from layotto.components.lock.base import LockStore
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block


class LockBlock(Block):
    kind = "lock"

    def __init__(self, spec: WorkerSpec, store: LockStore) -> None:
        super().__init__()
        self.component = store
        self.rules = keys.lock_rules(spec.metadata.get("keyPrefix"), spec.name, spec.app_id)

    def try_lock(self, payload: bytes) -> bytes:
        request = pb.TryLockRequest.FromString(payload)
        won = self.component.try_lock(
            self.rules.stored(request.resource_id), request.lock_owner, request.expire
        )
        return pb.TryLockResponse(success=won).SerializeToString()

    def unlock(self, payload: bytes) -> bytes:
        request = pb.UnlockRequest.FromString(payload)
        status = self.component.unlock(self.rules.stored(request.resource_id), request.lock_owner)
        return pb.UnlockResponse(status=int(status)).SerializeToString()  # type: ignore[arg-type]

    def lock_keep_alive(self, payload: bytes) -> bytes:
        request = pb.LockKeepAliveRequest.FromString(payload)
        status = self.component.keep_alive(
            self.rules.stored(request.resource_id), request.lock_owner, request.expire
        )
        return pb.LockKeepAliveResponse(status=int(status)).SerializeToString()  # type: ignore[arg-type]
