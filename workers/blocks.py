"""Translate Layotto's request messages into component calls, per building block.

This is where Layotto's runtime rules live on the worker side: key prefixes,
"no etag" spellings, enum conversions, WEAK/STRONG sequencer modes. Each
block answers ``handle(method, payload) -> response bytes`` and raises
component errors or CallError; ``layotto.boundary.status`` turns those into codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components import keys
from layotto.components.hello.base import HelloService
from layotto.components.lock.base import LockStore
from layotto.components.sequencer.base import SequencerStore
from layotto.components.sequencer.segments import SegmentCache
from layotto.components.state.base import (
    Concurrency,
    Consistency,
    DeleteRequest,
    SetRequest,
    StateStore,
    TransactionOp,
)
from layotto.proto import runtime_pb2 as pb

# Layotto's SDKs send "0" when the app gave no etag; Dapr's Redis store reads
# it (and "") as "no etag", so both mean None here.
_NO_ETAG = ("", "0")

_CONCURRENCY = {
    pb.StateOptions.CONCURRENCY_UNSPECIFIED: Concurrency.UNSPECIFIED,
    pb.StateOptions.CONCURRENCY_FIRST_WRITE: Concurrency.FIRST_WRITE,
    pb.StateOptions.CONCURRENCY_LAST_WRITE: Concurrency.LAST_WRITE,
}
_CONSISTENCY = {
    pb.StateOptions.CONSISTENCY_UNSPECIFIED: Consistency.UNSPECIFIED,
    pb.StateOptions.CONSISTENCY_EVENTUAL: Consistency.EVENTUAL,
    pb.StateOptions.CONSISTENCY_STRONG: Consistency.STRONG,
}


class Block:
    """Common shape of the four blocks: a method table over one component."""

    component: Any

    def __init__(self) -> None:
        self.methods: dict[str, Callable[[bytes], bytes]] = {}

    def handle(self, method: str, payload: bytes) -> bytes:
        handler = self.methods.get(method)
        if handler is None:
            raise CallError(Code.UNIMPLEMENTED, f"{method} is not served by this worker")
        return handler(payload)

    def handle_many(self, calls: Sequence[tuple[str, bytes]]) -> list[bytes | Exception]:
        """Several calls that arrived in one batch; each answer is the
        response or the error that call raised. Blocks may serve some kinds
        of call together (one backend round trip for many)."""
        answers: list[bytes | Exception] = []
        for method, payload in calls:
            try:
                answers.append(self.handle(method, payload))
            except Exception as exc:
                answers.append(exc)
        return answers

    def ping(self) -> None:
        self.component.ping()

    def close(self) -> None:
        self.component.close()


def _etag(item: pb.StateItem | pb.DeleteStateRequest) -> str | None:
    if not item.HasField("etag") or item.etag.value in _NO_ETAG:
        return None
    return str(item.etag.value)


def _options(item: pb.StateItem | pb.DeleteStateRequest) -> tuple[Concurrency, Consistency]:
    options = item.options
    try:
        return _CONCURRENCY[options.concurrency], _CONSISTENCY[options.consistency]
    except KeyError:
        raise CallError(Code.INVALID_ARGUMENT, "unknown state options value") from None


class StateBlock(Block):
    def __init__(self, spec: WorkerSpec, store: StateStore) -> None:
        super().__init__()
        self.component = store
        self.rules = keys.state_rules(spec.metadata.get("keyPrefix"), spec.name, spec.app_id)
        self.methods.update(
            GetState=self.get,
            GetBulkState=self.bulk_get,
            SaveState=self.save,
            DeleteState=self.delete,
            DeleteBulkState=self.bulk_delete,
            ExecuteStateTransaction=self.transact,
        )

    def _set_request(self, item: pb.StateItem) -> SetRequest:
        concurrency, consistency = _options(item)
        return SetRequest(
            self.rules.stored(item.key),
            item.value,
            _etag(item),
            dict(item.metadata),
            concurrency,
            consistency,
        )

    def _delete_request(self, item: pb.StateItem | pb.DeleteStateRequest) -> DeleteRequest:
        concurrency, consistency = _options(item)
        return DeleteRequest(
            self.rules.stored(item.key), _etag(item), dict(item.metadata), concurrency, consistency
        )

    def get(self, payload: bytes) -> bytes:
        request = pb.GetStateRequest.FromString(payload)
        consistency = _CONSISTENCY.get(request.consistency, Consistency.UNSPECIFIED)
        found = self.component.get(self.rules.stored(request.key), consistency)
        return pb.GetStateResponse(
            data=found.data or b"", etag=found.etag or "", metadata=dict(found.metadata)
        ).SerializeToString()

    def bulk_get(self, payload: bytes) -> bytes:
        request = pb.GetBulkStateRequest.FromString(payload)
        stored = [self.rules.stored(key) for key in request.keys]
        items = self.component.bulk_get(stored)
        answer = pb.GetBulkStateResponse()
        for user_key, item in zip(request.keys, items, strict=True):
            answer.items.add(
                key=user_key,
                data=item.data or b"",
                etag=item.etag or "",
                error=item.error,
                metadata=dict(item.metadata),
            )
        return answer.SerializeToString()

    def save(self, payload: bytes) -> bytes:
        request = pb.SaveStateRequest.FromString(payload)
        requests = [self._set_request(item) for item in request.states]
        if len(requests) == 1:
            self.component.set(requests[0])
        elif requests:
            self.component.bulk_set(requests)
        return b""

    def delete(self, payload: bytes) -> bytes:
        request = pb.DeleteStateRequest.FromString(payload)
        self.component.delete(self._delete_request(request))
        return b""

    def bulk_delete(self, payload: bytes) -> bytes:
        request = pb.DeleteBulkStateRequest.FromString(payload)
        requests = [self._delete_request(item) for item in request.states]
        if len(requests) == 1:
            self.component.delete(requests[0])
        elif requests:
            self.component.bulk_delete(requests)
        return b""

    def transact(self, payload: bytes) -> bytes:
        request = pb.ExecuteStateTransactionRequest.FromString(payload)
        operations: list[TransactionOp] = []
        for op in request.operations:
            if op.operationType == "upsert":
                operations.append(TransactionOp(self._set_request(op.request)))
            elif op.operationType == "delete":
                operations.append(TransactionOp(self._delete_request(op.request)))
            else:
                raise CallError(
                    Code.UNIMPLEMENTED,
                    f"operation type {op.operationType!r} is not supported "
                    "(use 'upsert' or 'delete')",
                )
        self.component.transact(operations)
        return b""

    def handle_many(self, calls: Sequence[tuple[str, bytes]]) -> list[bytes | Exception]:
        """Every GetState of the batch in one bulk read (one Redis round trip),
        the other calls one by one. Reads of a batch are concurrent calls, so
        reading them at one instant is as correct as reading them in turn."""
        reads = {i for i, (method, _) in enumerate(calls) if method == "GetState"}
        if len(reads) < 2:
            return super().handle_many(calls)
        read_answers = iter(self._get_many([calls[i][1] for i in sorted(reads)]))
        others = iter(super().handle_many([c for i, c in enumerate(calls) if i not in reads]))
        return [next(read_answers) if i in reads else next(others) for i in range(len(calls))]

    def _get_many(self, payloads: Sequence[bytes]) -> list[bytes | Exception]:
        keys: list[str | Exception] = []
        for payload in payloads:
            try:
                keys.append(self.rules.stored(pb.GetStateRequest.FromString(payload).key))
            except Exception as exc:
                keys.append(exc)
        try:
            found = iter(self.component.bulk_get([k for k in keys if isinstance(k, str)]))
        except Exception as exc:  # the backend failed: so did every read of the batch
            return [k if isinstance(k, Exception) else exc for k in keys]
        answers: list[bytes | Exception] = []
        for key in keys:
            if isinstance(key, Exception):
                answers.append(key)
                continue
            item = next(found)
            answers.append(
                pb.GetStateResponse(
                    data=item.data or b"", etag=item.etag or "", metadata=dict(item.metadata)
                ).SerializeToString()
            )
        return answers


class LockBlock(Block):
    def __init__(self, spec: WorkerSpec, store: LockStore) -> None:
        super().__init__()
        self.component = store
        self.rules = keys.lock_rules(spec.metadata.get("keyPrefix"), spec.name, spec.app_id)
        self.methods.update(
            TryLock=self.try_lock, Unlock=self.unlock, LockKeepAlive=self.keep_alive
        )

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

    def keep_alive(self, payload: bytes) -> bytes:
        request = pb.LockKeepAliveRequest.FromString(payload)
        status = self.component.keep_alive(
            self.rules.stored(request.resource_id), request.lock_owner, request.expire
        )
        return pb.LockKeepAliveResponse(status=int(status)).SerializeToString()  # type: ignore[arg-type]


class SequencerBlock(Block):
    def __init__(self, spec: WorkerSpec, store: SequencerStore) -> None:
        super().__init__()
        self.component = store
        self.rules = keys.sequencer_rules(spec.metadata.get("keyPrefix"), spec.name, spec.app_id)
        # Unlike Layotto, biggerThan keys get the same prefix as request keys,
        # so the floor applies to the ids apps actually ask for.
        floors = {self.rules.stored(k): v for k, v in (spec.bigger_than or {}).items()}
        if floors:
            store.ensure_bigger_than(floors)
        self.weak = SegmentCache(store, getattr(store, "segment_step", 10000))
        self.methods.update(GetNextId=self.next_id)

    def next_id(self, payload: bytes) -> bytes:
        request = pb.GetNextIdRequest.FromString(payload)
        key = self.rules.stored(request.key)
        increment = request.options.increment
        if increment == pb.SequencerOptions.WEAK:
            value = self.weak.next_id(key)
        elif increment == pb.SequencerOptions.STRONG:
            value = self.component.next_id(key)
        else:
            raise CallError(Code.INVALID_ARGUMENT, "options.Increment is illegal")
        return pb.GetNextIdResponse(next_id=value).SerializeToString()


class HelloBlock(Block):
    def __init__(self, spec: WorkerSpec, service: HelloService) -> None:
        super().__init__()
        self.component = service
        self.methods.update(SayHello=self.say_hello)

    def say_hello(self, payload: bytes) -> bytes:
        request = pb.SayHelloRequest.FromString(payload)
        answer = pb.SayHelloResponse(hello=self.component.say_hello(request.name))
        if request.HasField("data"):
            answer.data.CopyFrom(request.data)  # echoed: Layotto uses it for load tests
        return answer.SerializeToString()
