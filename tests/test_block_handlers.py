"""Each block answers exactly the calls declared for its kind (boundary/rpcs.py)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from layotto.boundary import rpcs
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.workers.block import Block
from layotto.workers.block_table import BLOCKS, open_block
from layotto.workers.lock_block import LockBlock

IN_MEMORY = {
    "hellos": "helloworld",
    "state": "in-memory",
    "lock": "in-memory",
    "sequencer": "in-memory",
    "config_store": "in-memory",
    "pub_subs": "in-memory",
    "rpcs": "http",  # needs no server until called
    "secret_store": "local.env",  # no in-memory type: the environment needs no file
    "bindings": "localstorage",
}
METADATA = {"rpcs": {"targets": '{"echo": "http://127.0.0.1:9"}'}}


def test_every_declared_kind_has_a_block_and_back() -> None:
    assert set(BLOCKS) == rpcs.KINDS == set(IN_MEMORY)
    for kind, block in BLOCKS.items():
        assert block.kind == kind


@pytest.mark.parametrize("kind", sorted(rpcs.KINDS))
def test_every_declared_call_of_a_kind_has_a_handler_in_its_block(kind: str) -> None:
    for name, handler in rpcs.handlers_of(kind).items():
        assert callable(getattr(BLOCKS[kind], handler, None)), f"{kind}: {name} -> {handler}"


def _handler_like(block: type[Block]) -> set[str]:
    """Public methods taking the request's bytes and returning the response's."""
    return {
        name
        for name, function in inspect.getmembers(block, inspect.isfunction)
        if not name.startswith("_")
        and function.__annotations__ == {"payload": "bytes", "return": "bytes"}
    }


@pytest.mark.parametrize("kind", sorted(rpcs.KINDS))
def test_a_block_has_no_undeclared_handler(kind: str) -> None:
    """A handler nobody declared would never be called: declare it or remove it."""
    assert _handler_like(BLOCKS[kind]) == set(rpcs.handlers_of(kind).values())


def test_the_undeclared_handler_check_sees_one() -> None:
    class Extra(LockBlock):
        def force_unlock(self, payload: bytes) -> bytes:
            return b""

    assert _handler_like(Extra) - _handler_like(LockBlock) == {"force_unlock"}


def test_a_block_lacking_a_declared_handler_fails_when_defined() -> None:
    with pytest.raises(TypeError, match=r"unlock \(for Unlock\).*lock_keep_alive"):

        class Partial(Block):
            kind = "lock"

            def try_lock(self, payload: bytes) -> bytes:
                return b""


def test_a_block_of_an_undeclared_kind_fails_when_defined() -> None:
    with pytest.raises(TypeError, match="no rpc is declared for kind 'queue'"):

        class Queue(Block):
            kind = "queue"


@pytest.fixture(params=sorted(IN_MEMORY))
def block(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Block]:
    kind = request.param
    metadata = {"rootPath": str(tmp_path)} if kind == "bindings" else METADATA.get(kind, {})
    address = f"ipc:///tmp/x/w-{kind}-0.ipc"
    spec = WorkerSpec(kind, "c", IN_MEMORY[kind], metadata, "app", 0, address)
    opened = open_block(spec)
    yield opened
    opened.close()


def test_a_block_dispatches_exactly_its_declared_calls(block: Block) -> None:
    declared = rpcs.handlers_of(block.kind)
    assert set(block.methods) == set(declared)
    for name, handler in declared.items():
        assert block.methods[name] == getattr(block, handler)


def test_a_call_declared_for_another_kind_is_unimplemented(block: Block) -> None:
    others = [r.name for r in rpcs.WIRE if block.kind not in r.kinds]
    assert others
    for name in others:
        with pytest.raises(CallError) as error:
            block.handle(name, b"")
        assert error.value.code is Code.UNIMPLEMENTED
        assert error.value.message == f"{name} is not served by this worker"
