"""The rpc block: InvokeService, the call's gRPC metadata as request headers.

The request comes in the envelope the API process builds for it
(``boundary/envelope.py``): the call's metadata and deadline travel with it.
The timeout of the call to the service is ``rpc_request_timeout`` (Layotto's
key, ms, default 3000) or what is left of the caller's deadline, whichever
is sooner.

Which gRPC metadata become headers: every key except what belongs to the
gRPC call itself and not to the app: pseudo-headers (``:authority``...),
``grpc-*`` (timeout, encodings, ...), ``user-agent``, ``content-type``
(the gRPC call's; the request's ``content_type`` sets the HTTP one), ``te``
and the hop-by-hop headers of HTTP/1.1, ``host`` and ``content-length``
(the HTTP client's own), and binary ``-bin`` keys (dropped by the envelope).

Calls of one batch (the API batches concurrent calls to a worker) run
concurrently: the worker serves one frame at a time, and a slow service must
not make the calls queued behind one call wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from layotto.boundary import envelope
from layotto.boundary.specs import WorkerSpec
from layotto.boundary.status import CallError, Code
from layotto.components.rpc import base
from layotto.components.rpc.base import Call, Invoker
from layotto.components.rpc.settings import parse_timeout
from layotto.proto import runtime_pb2 as pb
from layotto.workers.block import Block

_VERBS = {
    value.number: value.name
    for value in pb.HTTPExtension.Verb.DESCRIPTOR.values
    if value.name not in ("NONE", "CONNECT")
}
_VERBS[pb.HTTPExtension.NONE] = "POST"

_NOT_HEADERS = frozenset(
    {
        "user-agent",
        "content-type",
        "content-length",
        "host",
        "te",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    }
)

# HTTP status -> gRPC code, the usual mapping (gRPC's "HTTP to gRPC Status
# Code Mapping", with the statuses a REST service answers added); other 5xx
# INTERNAL, any other status UNKNOWN.
_CODES = {
    400: Code.INVALID_ARGUMENT,
    401: Code.UNAUTHENTICATED,
    403: Code.PERMISSION_DENIED,
    404: Code.NOT_FOUND,
    409: Code.ABORTED,
    429: Code.RESOURCE_EXHAUSTED,
    503: Code.UNAVAILABLE,
}
MAX_CONCURRENT = 64  # the API's largest batch


def headers_of(metadata: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's gRPC metadata that become HTTP request headers."""
    return [
        (key, value)
        for key, value in metadata
        if not key.startswith((":", "grpc-")) and key.lower() not in _NOT_HEADERS
    ]


def code_of_status(status: int) -> Code:
    if status in _CODES:
        return _CODES[status]
    return Code.INTERNAL if 500 <= status < 600 else Code.UNKNOWN


class RpcBlock(Block):
    kind = "rpcs"

    def __init__(self, spec: WorkerSpec, invoker: Invoker) -> None:
        super().__init__()
        self.component = invoker
        self.timeout = parse_timeout(spec.metadata, spec.name)
        self._threads = ThreadPoolExecutor(MAX_CONCURRENT, thread_name_prefix="invoke")

    def invoke_service(self, payload: bytes) -> bytes:
        try:
            wrapped = envelope.unwrap(payload)
            request = pb.InvokeServiceRequest.FromString(wrapped.request)
        except (envelope.EnvelopeError, ValueError) as exc:
            raise CallError(Code.INTERNAL, f"bad InvokeService request frame: {exc}") from None
        message = request.message
        verb = _VERBS.get(message.http_extension.verb)
        if verb is None:
            raise CallError(Code.INVALID_ARGUMENT, "http_extension.verb CONNECT is not supported")
        remaining = wrapped.deadline - time.monotonic()
        call = Call(
            service=request.id,
            method=message.method,
            verb=verb,
            query=message.http_extension.querystring,
            body=message.data.value,
            content_type=message.content_type,
            headers=headers_of(wrapped.metadata),
            timeout=max(0.001, min(self.timeout, remaining)),
        )
        try:
            answer = self.component.invoke(call)
        except base.UnknownServiceError as exc:
            raise CallError(Code.NOT_FOUND, str(exc)) from None
        except base.StatusError as exc:
            raise CallError(code_of_status(exc.status), str(exc)) from None
        except (base.RefusedError, base.TransportError) as exc:
            raise CallError(Code.UNAVAILABLE, str(exc)) from None
        except base.CallTimeoutError as exc:
            raise CallError(Code.DEADLINE_EXCEEDED, str(exc)) from None
        response = pb.InvokeResponse(content_type=answer.content_type)
        response.data.value = answer.body
        return response.SerializeToString()

    def handle_many(self, calls: Sequence[tuple[str, bytes]]) -> list[bytes | Exception]:
        if len(calls) == 1:
            return super().handle_many(calls)

        def one(method: str, payload: bytes) -> bytes | Exception:
            try:
                return self.handle(method, payload)
            except Exception as exc:
                return exc

        return list(self._threads.map(one, *zip(*calls, strict=True)))

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.component.close()
