"""The state block: Layotto's state API over one store.

The worker applies Layotto's runtime rules here: key prefixes (``keyPrefix``),
"no etag" spellings, enum conversions; a batch's GetStates are read together.
"""

from __future__ import annotations

from collections.abc import Sequence

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components import keys
from layotto.components.state.base import (
    Concurrency,
    Consistency,
    DeleteRequest,
    SetRequest,
    StateStore,
    TransactionOp,
)
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block

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
    kind = "state"

    def __init__(self, spec: WorkerSpec, store: StateStore) -> None:
        super().__init__()
        self.component = store
        self.rules = keys.state_rules(spec.metadata.get("keyPrefix"), spec.name, spec.app_id)

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

    def get_state(self, payload: bytes) -> bytes:
        request = pb.GetStateRequest.FromString(payload)
        consistency = _CONSISTENCY.get(request.consistency, Consistency.UNSPECIFIED)
        found = self.component.get(self.rules.stored(request.key), consistency)
        return pb.GetStateResponse(
            data=found.data or b"", etag=found.etag or "", metadata=dict(found.metadata)
        ).SerializeToString()

    def get_bulk_state(self, payload: bytes) -> bytes:
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

    def save_state(self, payload: bytes) -> bytes:
        request = pb.SaveStateRequest.FromString(payload)
        requests = [self._set_request(item) for item in request.states]
        if len(requests) == 1:
            self.component.set(requests[0])
        elif requests:
            self.component.bulk_set(requests)
        return b""

    def delete_state(self, payload: bytes) -> bytes:
        request = pb.DeleteStateRequest.FromString(payload)
        self.component.delete(self._delete_request(request))
        return b""

    def delete_bulk_state(self, payload: bytes) -> bytes:
        request = pb.DeleteBulkStateRequest.FromString(payload)
        requests = [self._delete_request(item) for item in request.states]
        if len(requests) == 1:
            self.component.delete(requests[0])
        elif requests:
            self.component.bulk_delete(requests)
        return b""

    def execute_state_transaction(self, payload: bytes) -> bytes:
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
