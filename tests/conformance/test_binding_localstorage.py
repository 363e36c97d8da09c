"""The localstorage output binding (Dapr's bindings.localstorage) on a temp directory,
and its sandbox: no name reaches outside the root."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from layotto.components.bindings import localstorage
from layotto.components.errors import BackendUnavailableError, InvalidRequestError
from layotto.workers.bindings_block import BindingsBlock
from tests.conformance.bindings_support import invoke
from tests.conformance.bindings_support import open_binding as open_typed


def open_binding(root: Path) -> BindingsBlock:
    return open_typed("localstorage", "files", {"rootPath": str(root)})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def binding(root: Path) -> Iterator[BindingsBlock]:
    block = open_binding(root)
    yield block
    block.close()


def test_the_root_is_made_and_ping_checks_it_is_a_directory(
    binding: BindingsBlock, root: Path
) -> None:
    assert root.is_dir()
    binding.ping()
    root.rmdir()
    with pytest.raises(BackendUnavailableError, match="is not a directory"):
        binding.ping()


def test_ping_checks_the_root_is_writable(
    binding: BindingsBlock, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As the kernel answers for a read-only mount or a directory not ours; a
    # mode change alone would not do when the tests run as root.
    real_access = os.access
    monkeypatch.setattr(
        localstorage.os,
        "access",
        lambda path, mode: False if str(path) == str(root) else real_access(path, mode),
    )
    with pytest.raises(BackendUnavailableError, match="is not writable"):
        binding.ping()


def test_create_get_list_delete(binding: BindingsBlock, root: Path) -> None:
    made = invoke(binding, "create", b"\x00bytes", fileName="a.txt")
    assert dict(made.metadata) == {"fileName": "a.txt"}
    assert (root / "a.txt").read_bytes() == b"\x00bytes"
    assert invoke(binding, "get", fileName="a.txt").data == b"\x00bytes"
    invoke(binding, "create", b"over", fileName="a.txt")
    assert invoke(binding, "get", fileName="a.txt").data == b"over"
    invoke(binding, "create", b"deep", fileName="sub/dir/b.txt")
    assert json.loads(invoke(binding, "list").data) == ["a.txt", "sub/dir/b.txt"]
    invoke(binding, "delete", fileName="a.txt")
    assert not (root / "a.txt").exists()
    assert json.loads(invoke(binding, "list").data) == ["sub/dir/b.txt"]


def test_create_without_a_name_generates_one(binding: BindingsBlock, root: Path) -> None:
    name = invoke(binding, "create", b"x").metadata["fileName"]
    other = invoke(binding, "create", b"y").metadata["fileName"]
    assert name and other and name != other
    assert (root / name).read_bytes() == b"x"
    assert invoke(binding, "get", fileName=other).data == b"y"


def test_a_missing_file(binding: BindingsBlock) -> None:
    for operation in ("get", "delete"):
        with pytest.raises(InvalidRequestError, match="file 'nope' not found"):
            invoke(binding, operation, fileName="nope")


@pytest.mark.parametrize("operation", ["get", "delete"])
def test_file_name_is_required(binding: BindingsBlock, operation: str) -> None:
    with pytest.raises(
        InvalidRequestError, match=f"metadata fileName is required for operation {operation}"
    ):
        invoke(binding, operation)


def test_an_unsupported_operation_names_the_supported_ones(binding: BindingsBlock) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        invoke(binding, "post", fileName="a")
    assert str(refused.value) == (
        "binding files does not support operation post. supported operations: "
        "create, get, list, delete"
    )


# -- the sandbox ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["create", "get", "delete"])
@pytest.mark.parametrize("name", ["/etc/passwd", "../outside", "a/../../outside", "sub/..", ".."])
def test_absolute_names_and_dot_dot_are_refused(
    binding: BindingsBlock, root: Path, operation: str, name: str
) -> None:
    (root.parent / "outside").write_bytes(b"secret")
    with pytest.raises(InvalidRequestError, match="is refused: names are relative"):
        invoke(binding, operation, b"x", fileName=name)
    assert (root.parent / "outside").read_bytes() == b"secret"


@pytest.mark.parametrize("operation", ["create", "get", "delete"])
def test_a_link_to_a_file_outside_is_refused(
    binding: BindingsBlock, root: Path, operation: str
) -> None:
    outside = root.parent / "outside"
    outside.write_bytes(b"secret")
    (root / "link").symlink_to(outside)
    with pytest.raises(InvalidRequestError, match="'link' is refused: it resolves outside"):
        invoke(binding, operation, b"x", fileName="link")
    assert outside.read_bytes() == b"secret"
    assert (root / "link").is_symlink()


@pytest.mark.parametrize("operation", ["create", "get", "delete"])
def test_a_link_to_a_directory_outside_is_refused(
    binding: BindingsBlock, root: Path, operation: str
) -> None:
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_bytes(b"secret")
    (root / "d").symlink_to(elsewhere)
    with pytest.raises(InvalidRequestError, match="resolves outside the binding's root"):
        invoke(binding, operation, b"x", fileName="d/f")
    assert (elsewhere / "f").read_bytes() == b"secret"


def test_a_link_inside_the_root_is_not_followed(binding: BindingsBlock, root: Path) -> None:
    invoke(binding, "create", b"real", fileName="real")
    (root / "alias").symlink_to(root / "real")
    for operation in ("get", "create"):
        with pytest.raises(InvalidRequestError, match="'alias' is refused: it is a link"):
            invoke(binding, operation, b"x", fileName="alias")
    assert (root / "real").read_bytes() == b"real"


def test_the_root_itself_is_no_file(binding: BindingsBlock) -> None:
    with pytest.raises(InvalidRequestError, match="is refused"):
        invoke(binding, "get", fileName=".")


def test_list_stays_in_the_root(binding: BindingsBlock, root: Path) -> None:
    elsewhere = root.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f").write_bytes(b"secret")
    (root / "d").symlink_to(elsewhere)
    invoke(binding, "create", b"x", fileName="mine")
    assert json.loads(invoke(binding, "list").data) == ["mine"]
