"""A subscription opened again by the API process that named it replaces the
worker's copy (the API reopens what it believed lost, while the worker may
still hold it); anyone else's subscription to the same topic still clashes."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest

from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block_table import open_block
from layotto.workers.pubsub_block import PubSubBlock


@pytest.fixture
def pubsub() -> Iterator[PubSubBlock]:
    spec = WorkerSpec("pub_subs", "ps", "in-memory", {}, "app", 0, "ipc:///tmp/x/w-pub_subs-0.ipc")
    block = open_block(spec)
    assert isinstance(block, PubSubBlock)
    yield block
    block.close()


def _open(block: PubSubBlock, topic: str, key: str, owner: int | None = None) -> int:
    initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name="ps", topic=topic)
    payload = {
        "owner": os.getpid() if owner is None else owner,
        "key": key,
        "request": base64.b64encode(initial.SerializeToString()).decode(),
    }
    return int(json.loads(block.open_subscription(json.dumps(payload).encode()))["sub"])


def test_opening_again_under_the_same_name_replaces(pubsub: PubSubBlock) -> None:
    first = _open(pubsub, "orders", key="7")
    second = _open(pubsub, "orders", key="7")
    assert second != first
    assert pubsub.subscriptions.get(first) is None  # replaced: closed
    assert pubsub.subscriptions.get(second) is not None


def test_another_subscriber_of_the_topic_still_clashes(pubsub: PubSubBlock) -> None:
    _open(pubsub, "orders", key="7")
    for key, owner in (("8", None), ("7", os.getppid())):
        with pytest.raises(CallError) as clash:
            _open(pubsub, "orders", key=key, owner=owner)
        assert clash.value.code is Code.ALREADY_EXISTS
