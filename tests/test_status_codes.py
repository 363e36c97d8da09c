"""Domain errors become Layotto's gRPC status codes in one place (Layotto's own mapping)."""

from __future__ import annotations

import ast
from pathlib import Path

import grpc
import pytest

from layotto.boundary import status
from layotto.boundary.status import CallError, Code, code_of
from layotto.components import errors


def bulk(*causes: errors.ComponentError) -> errors.BulkError:
    return errors.BulkError([errors.BulkKeyError(f"k{i}", c) for i, c in enumerate(causes)])


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.ETagMismatchError("etag mismatch"), Code.ABORTED),
        (errors.ETagInvalidError("not a version"), Code.INVALID_ARGUMENT),
        (errors.InvalidRequestError("bad key"), Code.INVALID_ARGUMENT),
        (errors.BackendUnavailableError("connection refused"), Code.UNAVAILABLE),
        (errors.NotSupportedError("no transactions"), Code.UNIMPLEMENTED),
        (errors.ComponentError("something else"), Code.INTERNAL),
        (ValueError("bug"), Code.INTERNAL),
        (RuntimeError("bug"), Code.INTERNAL),
        (KeyError("k"), Code.INTERNAL),
    ],
)
def test_code_of_domain_errors(exc: BaseException, code: Code) -> None:
    assert code_of(exc) is code


@pytest.mark.parametrize("code", list(Code))
def test_call_error_passes_its_code_through(code: Code) -> None:
    error = CallError(code, "why")
    assert code_of(error) is code
    assert (error.code, error.message, str(error)) == (code, "why", "why")


def test_subclass_of_a_mapped_error_maps_the_same() -> None:
    class WrongVersion(errors.ETagMismatchError):
        pass

    assert code_of(WrongVersion()) is Code.ABORTED


def test_bulk_key_error_maps_its_cause() -> None:
    assert code_of(errors.BulkKeyError("k", errors.ETagMismatchError())) is Code.ABORTED
    assert code_of(errors.BulkKeyError("k", errors.ComponentError())) is Code.INTERNAL


@pytest.mark.parametrize(
    ("causes", "code"),
    [
        ((errors.ETagMismatchError(),), Code.ABORTED),
        ((errors.ETagMismatchError(), errors.ETagMismatchError()), Code.ABORTED),
        ((errors.ETagInvalidError(), errors.ETagInvalidError()), Code.INVALID_ARGUMENT),
        # different errors, same code: still uniform
        ((errors.ETagInvalidError(), errors.InvalidRequestError()), Code.INVALID_ARGUMENT),
        ((errors.BackendUnavailableError(),) * 3, Code.UNAVAILABLE),
        ((errors.NotSupportedError(), errors.NotSupportedError()), Code.UNIMPLEMENTED),
        ((errors.ComponentError(),), Code.INTERNAL),
        # mixed causes
        ((errors.InvalidRequestError(), errors.BackendUnavailableError()), Code.ABORTED),
        ((errors.ETagInvalidError(), errors.ComponentError()), Code.ABORTED),
    ],
)
def test_bulk_error(causes: tuple[errors.ComponentError, ...], code: Code) -> None:
    assert code_of(bulk(*causes)) is code


@pytest.mark.parametrize("code", list(Code))
def test_codes_are_grpc_status_codes(code: Code) -> None:
    assert grpc.StatusCode[code.name].value[0] == code.value


def test_every_grpc_status_code_has_a_code() -> None:
    assert {c.name for c in grpc.StatusCode} == {c.name for c in Code}


def test_status_module_does_not_import_grpc() -> None:
    # workers never load grpc (fork safety): the mapping must not pull it in
    tree = ast.parse(Path(status.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "grpc" not in imported
    assert imported  # the walk did find the module's imports
