"""The sequencer block: Layotto's GetNextId, WEAK ids from a per-worker segment
and STRONG ids from the store."""

from __future__ import annotations

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components import keys
from layotto.components.sequencer.base import SequencerStore
from layotto.components.sequencer.segments import SegmentCache
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block


class SequencerBlock(Block):
    kind = "sequencer"

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

    def get_next_id(self, payload: bytes) -> bytes:
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
