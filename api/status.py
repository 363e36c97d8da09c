"""A CallError as the gRPC status the client gets (the API process's edge)."""

from __future__ import annotations

import grpc

from layotto.boundary.status import CallError

_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def abort(context: grpc.ServicerContext, error: CallError) -> None:
    """End the call with ``error``'s code and message (raises, as grpc does)."""
    context.abort(_GRPC_CODES[int(error.code)], error.message)
