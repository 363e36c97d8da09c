"""Wire-compatibility checks of our spec.proto.runtime.v1 protos against Layotto's API.

The expected values come from Layotto's spec/proto/runtime/v1/*.proto (v0.5.0); a failure
here means Layotto's SDKs would no longer talk to our sidecar.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)
from google.protobuf.descriptor_pb2 import FileDescriptorProto

from layotto.proto import (
    appcallback_pb2,
    appcallback_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    runtime_pb2,
    runtime_pb2_grpc,
)

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "spec.proto.runtime.v1"
F = FieldDescriptor

# ---------------------------------------------------------------------------
# helpers


def _type_name(field: FieldDescriptor) -> str:
    """Compact type: scalar name, message/enum full name (package stripped), map<k,v>."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields
        return f"map<{_type_name(key)},{_type_name(value)}>"
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = {
            F.TYPE_STRING: "string",
            F.TYPE_BYTES: "bytes",
            F.TYPE_BOOL: "bool",
            F.TYPE_INT32: "int32",
            F.TYPE_INT64: "int64",
        }[field.type]
    name = name.removeprefix(PACKAGE + ".")
    return f"repeated {name}" if field.is_repeated else name


def _fields(message: Descriptor) -> dict[str, tuple[int, str]]:
    return {f.name: (f.number, _type_name(f)) for f in message.fields}


def _enum(enum: EnumDescriptor) -> dict[str, int]:
    return {v.name: v.number for v in enum.values}


def _methods(service: ServiceDescriptor) -> list[tuple[str, str, str, bool, bool]]:
    return [
        (
            m.name,
            m.input_type.full_name.removeprefix(PACKAGE + "."),
            m.output_type.full_name.removeprefix(PACKAGE + "."),
            m.client_streaming,
            m.server_streaming,
        )
        for m in service.methods
    ]


# ---------------------------------------------------------------------------
# files and services

FILES: list[tuple[FileDescriptor, str]] = [
    (runtime_pb2.DESCRIPTOR, "RuntimeProto"),
    (appcallback_pb2.DESCRIPTOR, "AppCallbackProto"),
    (lifecycle_pb2.DESCRIPTOR, "LifecycleProto"),
]


@pytest.mark.parametrize(("file", "outer_class"), FILES, ids=lambda v: getattr(v, "name", v))
def test_file_package_and_options(file: FileDescriptor, outer_class: str) -> None:
    assert file.package == PACKAGE
    assert FileDescriptorProto.FromString(file.serialized_pb).syntax == "proto3"
    options = file.GetOptions()
    assert options.go_package == "mosn.io/layotto/spec/proto/runtime/v1;runtime"
    assert options.java_package == PACKAGE
    assert options.java_outer_classname == outer_class


def test_runtime_imports_appcallback_and_well_known_types() -> None:
    deps = {d.name for d in runtime_pb2.DESCRIPTOR.dependencies}
    assert deps == {
        "google/protobuf/any.proto",
        "google/protobuf/empty.proto",
        "layotto/proto/appcallback.proto",
    }
    stream_resp = runtime_pb2.SubscribeTopicEventsResponse.DESCRIPTOR
    assert stream_resp.fields_by_name["event_message"].message_type is (
        appcallback_pb2.TopicEventRequest.DESCRIPTOR
    )


RUNTIME_METHODS = [
    # name, request, response, client streaming, server streaming
    ("SayHello", "SayHelloRequest", "SayHelloResponse", False, False),
    ("InvokeService", "InvokeServiceRequest", "InvokeResponse", False, False),
    ("GetConfiguration", "GetConfigurationRequest", "GetConfigurationResponse", False, False),
    ("SaveConfiguration", "SaveConfigurationRequest", "google.protobuf.Empty", False, False),
    ("DeleteConfiguration", "DeleteConfigurationRequest", "google.protobuf.Empty", False, False),
    (
        "SubscribeConfiguration",
        "SubscribeConfigurationRequest",
        "SubscribeConfigurationResponse",
        True,
        True,
    ),
    ("TryLock", "TryLockRequest", "TryLockResponse", False, False),
    ("Unlock", "UnlockRequest", "UnlockResponse", False, False),
    ("LockKeepAlive", "LockKeepAliveRequest", "LockKeepAliveResponse", False, False),
    ("GetNextId", "GetNextIdRequest", "GetNextIdResponse", False, False),
    ("GetState", "GetStateRequest", "GetStateResponse", False, False),
    ("GetBulkState", "GetBulkStateRequest", "GetBulkStateResponse", False, False),
    ("SaveState", "SaveStateRequest", "google.protobuf.Empty", False, False),
    ("DeleteState", "DeleteStateRequest", "google.protobuf.Empty", False, False),
    ("DeleteBulkState", "DeleteBulkStateRequest", "google.protobuf.Empty", False, False),
    (
        "ExecuteStateTransaction",
        "ExecuteStateTransactionRequest",
        "google.protobuf.Empty",
        False,
        False,
    ),
    ("PublishEvent", "PublishEventRequest", "google.protobuf.Empty", False, False),
    (
        "SubscribeTopicEvents",
        "SubscribeTopicEventsRequest",
        "SubscribeTopicEventsResponse",
        True,
        True,
    ),
    ("GetFile", "GetFileRequest", "GetFileResponse", False, True),
    ("PutFile", "PutFileRequest", "google.protobuf.Empty", True, False),
    ("ListFile", "ListFileRequest", "ListFileResp", False, False),
    ("DelFile", "DelFileRequest", "google.protobuf.Empty", False, False),
    ("GetFileMeta", "GetFileMetaRequest", "GetFileMetaResponse", False, False),
    ("InvokeBinding", "InvokeBindingRequest", "InvokeBindingResponse", False, False),
    ("GetSecret", "GetSecretRequest", "GetSecretResponse", False, False),
    ("GetBulkSecret", "GetBulkSecretRequest", "GetBulkSecretResponse", False, False),
]


def test_runtime_service_methods() -> None:
    service = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
    assert service.full_name == "spec.proto.runtime.v1.Runtime"
    assert len(RUNTIME_METHODS) == 26
    assert _methods(service) == RUNTIME_METHODS


def test_appcallback_and_lifecycle_service_methods() -> None:
    appcallback = appcallback_pb2.DESCRIPTOR.services_by_name["AppCallback"]
    assert appcallback.full_name == "spec.proto.runtime.v1.AppCallback"
    assert _methods(appcallback) == [
        (
            "ListTopicSubscriptions",
            "google.protobuf.Empty",
            "ListTopicSubscriptionsResponse",
            False,
            False,
        ),
        ("OnTopicEvent", "TopicEventRequest", "TopicEventResponse", False, False),
    ]
    lifecycle = lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"]
    assert lifecycle.full_name == "spec.proto.runtime.v1.Lifecycle"
    assert _methods(lifecycle) == [
        ("ApplyConfiguration", "DynamicConfiguration", "ApplyConfigurationResponse", False, False)
    ]


class _RecordingChannel:
    """Stands in for grpc.Channel: records (arity, path) of every method a stub binds."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def _record(self, arity: str, path: str) -> object:
        self.calls.append((arity, path))
        return object()

    def unary_unary(self, path: str, *args: Any, **kwargs: Any) -> object:
        return self._record("unary_unary", path)

    def unary_stream(self, path: str, *args: Any, **kwargs: Any) -> object:
        return self._record("unary_stream", path)

    def stream_unary(self, path: str, *args: Any, **kwargs: Any) -> object:
        return self._record("stream_unary", path)

    def stream_stream(self, path: str, *args: Any, **kwargs: Any) -> object:
        return self._record("stream_stream", path)


def test_generated_stubs_use_full_method_paths() -> None:
    arity = {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }
    channel = _RecordingChannel()
    runtime_pb2_grpc.RuntimeStub(cast(grpc.Channel, channel))
    assert channel.calls == [
        (arity[(cs, ss)], f"/spec.proto.runtime.v1.Runtime/{name}")
        for name, _, _, cs, ss in RUNTIME_METHODS
    ]
    assert ("unary_unary", "/spec.proto.runtime.v1.Runtime/GetState") in channel.calls

    channel = _RecordingChannel()
    appcallback_pb2_grpc.AppCallbackStub(cast(grpc.Channel, channel))
    lifecycle_pb2_grpc.LifecycleStub(cast(grpc.Channel, channel))
    assert channel.calls == [
        ("unary_unary", "/spec.proto.runtime.v1.AppCallback/ListTopicSubscriptions"),
        ("unary_unary", "/spec.proto.runtime.v1.AppCallback/OnTopicEvent"),
        ("unary_unary", "/spec.proto.runtime.v1.Lifecycle/ApplyConfiguration"),
    ]


# ---------------------------------------------------------------------------
# messages

MAP_SS = "map<string,string>"

MESSAGES: dict[str, tuple[Descriptor, dict[str, tuple[int, str]]]] = {
    "InvokeServiceRequest": (
        runtime_pb2.InvokeServiceRequest.DESCRIPTOR,
        {"id": (1, "string"), "message": (3, "CommonInvokeRequest")},
    ),
    "CommonInvokeRequest": (
        runtime_pb2.CommonInvokeRequest.DESCRIPTOR,
        {
            "method": (1, "string"),
            "data": (2, "google.protobuf.Any"),
            "content_type": (3, "string"),
            "http_extension": (4, "HTTPExtension"),
        },
    ),
    "SayHelloRequest": (
        runtime_pb2.SayHelloRequest.DESCRIPTOR,
        {"service_name": (1, "string"), "name": (2, "string"), "data": (3, "google.protobuf.Any")},
    ),
    "ConfigurationItem": (
        runtime_pb2.ConfigurationItem.DESCRIPTOR,
        {
            "key": (1, "string"),
            "content": (2, "string"),
            "group": (3, "string"),
            "label": (4, "string"),
            "tags": (5, MAP_SS),
            "metadata": (6, MAP_SS),
        },
    ),
    "GetConfigurationRequest": (
        runtime_pb2.GetConfigurationRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "app_id": (2, "string"),
            "group": (3, "string"),
            "label": (4, "string"),
            "keys": (5, "repeated string"),
            "metadata": (6, MAP_SS),
            "subscribe_update": (7, "bool"),
        },
    ),
    "TryLockRequest": (
        runtime_pb2.TryLockRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "resource_id": (2, "string"),
            "lock_owner": (3, "string"),
            "expire": (4, "int32"),
        },
    ),
    "UnlockResponse": (
        runtime_pb2.UnlockResponse.DESCRIPTOR,
        {"status": (1, "UnlockResponse.Status")},
    ),
    "GetNextIdRequest": (
        runtime_pb2.GetNextIdRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "key": (2, "string"),
            "options": (3, "SequencerOptions"),
            "metadata": (4, MAP_SS),
        },
    ),
    "GetStateRequest": (
        runtime_pb2.GetStateRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "key": (2, "string"),
            "consistency": (3, "StateOptions.StateConsistency"),
            "metadata": (4, MAP_SS),
        },
    ),
    "StateItem": (
        runtime_pb2.StateItem.DESCRIPTOR,
        {
            "key": (1, "string"),
            "value": (2, "bytes"),
            "etag": (3, "Etag"),
            "metadata": (4, MAP_SS),
            "options": (5, "StateOptions"),
        },
    ),
    "DeleteStateRequest": (
        runtime_pb2.DeleteStateRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "key": (2, "string"),
            "etag": (3, "Etag"),
            "options": (4, "StateOptions"),
            "metadata": (5, MAP_SS),
        },
    ),
    "BulkStateItem": (
        runtime_pb2.BulkStateItem.DESCRIPTOR,
        {
            "key": (1, "string"),
            "data": (2, "bytes"),
            "etag": (3, "string"),
            "error": (4, "string"),
            "metadata": (5, MAP_SS),
        },
    ),
    "TransactionalStateOperation": (
        runtime_pb2.TransactionalStateOperation.DESCRIPTOR,
        {"operationType": (1, "string"), "request": (2, "StateItem")},
    ),
    "ExecuteStateTransactionRequest": (
        runtime_pb2.ExecuteStateTransactionRequest.DESCRIPTOR,
        {
            "storeName": (1, "string"),
            "operations": (2, "repeated TransactionalStateOperation"),
            "metadata": (3, MAP_SS),
        },
    ),
    "PublishEventRequest": (
        runtime_pb2.PublishEventRequest.DESCRIPTOR,
        {
            "pubsub_name": (1, "string"),
            "topic": (2, "string"),
            "data": (3, "bytes"),
            "data_content_type": (4, "string"),
            "metadata": (5, MAP_SS),
        },
    ),
    "SubscribeTopicEventsRequestInitial": (
        runtime_pb2.SubscribeTopicEventsRequestInitial.DESCRIPTOR,
        {
            "pubsub_name": (1, "string"),
            "topic": (2, "string"),
            "metadata": (3, MAP_SS),
            "dead_letter_topic": (4, "string"),
        },
    ),
    "SubscribeTopicEventsRequestProcessed": (
        runtime_pb2.SubscribeTopicEventsRequestProcessed.DESCRIPTOR,
        {"id": (1, "string"), "status": (2, "TopicEventResponse")},
    ),
    "GetFileMetaResponse": (
        runtime_pb2.GetFileMetaResponse.DESCRIPTOR,
        {"size": (1, "int64"), "last_modified": (2, "string"), "response": (3, "FileMeta")},
    ),
    "FileMeta": (
        runtime_pb2.FileMeta.DESCRIPTOR,
        {"metadata": (1, "map<string,FileMetaValue>")},
    ),
    "ListFileRequest": (
        runtime_pb2.ListFileRequest.DESCRIPTOR,
        {"request": (1, "FileRequest"), "page_size": (2, "int32"), "marker": (3, "string")},
    ),
    "ListFileResp": (
        runtime_pb2.ListFileResp.DESCRIPTOR,
        {"files": (1, "repeated FileInfo"), "marker": (2, "string"), "is_truncated": (3, "bool")},
    ),
    "PutFileRequest": (
        runtime_pb2.PutFileRequest.DESCRIPTOR,
        {
            "store_name": (1, "string"),
            "name": (2, "string"),
            "data": (3, "bytes"),
            "metadata": (4, MAP_SS),
        },
    ),
    "InvokeBindingRequest": (
        runtime_pb2.InvokeBindingRequest.DESCRIPTOR,
        {
            "name": (1, "string"),
            "data": (2, "bytes"),
            "metadata": (3, MAP_SS),
            "operation": (4, "string"),
        },
    ),
    "GetBulkSecretResponse": (
        runtime_pb2.GetBulkSecretResponse.DESCRIPTOR,
        {"data": (1, "map<string,SecretResponse>")},
    ),
    "TopicEventRequest": (
        appcallback_pb2.TopicEventRequest.DESCRIPTOR,
        {
            "id": (1, "string"),
            "source": (2, "string"),
            "type": (3, "string"),
            "spec_version": (4, "string"),
            "data_content_type": (5, "string"),
            "topic": (6, "string"),
            "data": (7, "bytes"),
            "pubsub_name": (8, "string"),
            "metadata": (10, MAP_SS),
        },
    ),
    "TopicSubscription": (
        appcallback_pb2.TopicSubscription.DESCRIPTOR,
        {"pubsub_name": (1, "string"), "topic": (2, "string"), "metadata": (3, MAP_SS)},
    ),
    "ComponentConfig": (
        lifecycle_pb2.ComponentConfig.DESCRIPTOR,
        {"kind": (1, "string"), "name": (2, "string"), "metadata": (3, MAP_SS)},
    ),
    "DynamicConfiguration": (
        lifecycle_pb2.DynamicConfiguration.DESCRIPTOR,
        {"component_config": (1, "ComponentConfig")},
    ),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_fields(name: str) -> None:
    descriptor, expected = MESSAGES[name]
    assert descriptor.full_name == f"{PACKAGE}.{name}"
    assert _fields(descriptor) == expected


# Top-level messages of Layotto's runtime.proto: the rpc types plus the ones they use.
RUNTIME_MESSAGES = {
    *(m for _, req, resp, _, _ in RUNTIME_METHODS for m in (req, resp)),
    *("CommonInvokeRequest", "HTTPExtension", "ConfigurationItem", "SequencerOptions"),
    *("BulkStateItem", "StateItem", "Etag", "StateOptions", "TransactionalStateOperation"),
    *("SubscribeTopicEventsRequestInitial", "SubscribeTopicEventsRequestProcessed"),
    *("SubscribeTopicEventsResponseInitial", "FileMetaValue", "FileMeta", "FileRequest"),
    *("FileInfo", "SecretResponse"),
} - {"google.protobuf.Empty"}


def test_runtime_message_set() -> None:
    assert len(RUNTIME_MESSAGES) == 60
    assert set(runtime_pb2.DESCRIPTOR.message_types_by_name) == RUNTIME_MESSAGES


def test_next_id_is_int64_carried_as_js_string() -> None:
    field = runtime_pb2.GetNextIdResponse.DESCRIPTOR.fields_by_name["next_id"]
    assert (field.number, field.type) == (1, F.TYPE_INT64)
    assert field.GetOptions().jstype == field.GetOptions().JS_STRING


def test_enums() -> None:
    lock_status = {"SUCCESS": 0, "LOCK_UNEXIST": 1, "LOCK_BELONG_TO_OTHERS": 2, "INTERNAL_ERROR": 3}
    assert runtime_pb2.UnlockResponse.Status.DESCRIPTOR.full_name == (
        "spec.proto.runtime.v1.UnlockResponse.Status"
    )
    assert _enum(runtime_pb2.UnlockResponse.Status.DESCRIPTOR) == lock_status
    assert _enum(runtime_pb2.LockKeepAliveResponse.Status.DESCRIPTOR) == lock_status
    assert _enum(runtime_pb2.SequencerOptions.AutoIncrement.DESCRIPTOR) == {"WEAK": 0, "STRONG": 1}
    assert _enum(runtime_pb2.StateOptions.StateConcurrency.DESCRIPTOR) == {
        "CONCURRENCY_UNSPECIFIED": 0,
        "CONCURRENCY_FIRST_WRITE": 1,
        "CONCURRENCY_LAST_WRITE": 2,
    }
    assert _enum(runtime_pb2.StateOptions.StateConsistency.DESCRIPTOR) == {
        "CONSISTENCY_UNSPECIFIED": 0,
        "CONSISTENCY_EVENTUAL": 1,
        "CONSISTENCY_STRONG": 2,
    }
    assert list(_enum(runtime_pb2.HTTPExtension.Verb.DESCRIPTOR).items()) == [
        ("NONE", 0),
        ("GET", 1),
        ("HEAD", 2),
        ("POST", 3),
        ("PUT", 4),
        ("DELETE", 5),
        ("CONNECT", 6),
        ("OPTIONS", 7),
        ("TRACE", 8),
        ("PATCH", 9),
    ]
    status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
    assert status.DESCRIPTOR.full_name == (
        "spec.proto.runtime.v1.TopicEventResponse.TopicEventResponseStatus"
    )
    assert _enum(status.DESCRIPTOR) == {"SUCCESS": 0, "RETRY": 1, "DROP": 2}


def test_oneofs_and_optional() -> None:
    request = runtime_pb2.SubscribeTopicEventsRequest.DESCRIPTOR
    oneof = request.oneofs_by_name["subscribe_topic_events_request_type"]
    assert [f.name for f in oneof.fields] == ["initial_request", "event_processed"]
    response = runtime_pb2.SubscribeTopicEventsResponse.DESCRIPTOR
    oneof = response.oneofs_by_name["subscribe_topic_events_response_type"]
    assert [f.name for f in oneof.fields] == ["initial_response", "event_message"]
    assert runtime_pb2.SubscribeTopicEventsResponseInitial.DESCRIPTOR.fields == []

    initial = runtime_pb2.SubscribeTopicEventsRequestInitial()
    assert not initial.HasField("dead_letter_topic")
    initial.dead_letter_topic = ""
    assert initial.HasField("dead_letter_topic")


# ---------------------------------------------------------------------------
# encoded bytes (hand-computed tags: (number << 3) | wire type)


def test_encoding_matches_field_numbers() -> None:
    invoke = runtime_pb2.InvokeServiceRequest(
        id="a", message=runtime_pb2.CommonInvokeRequest(method="m")
    )
    assert invoke.SerializeToString() == b"\x0a\x01a" + b"\x1a\x03" + b"\x0a\x01m"

    event = appcallback_pb2.TopicEventRequest(data=b"x", metadata={"k": "v"})
    # data: field 7, LEN -> 0x3a; metadata entry: field 10, LEN -> 0x52.
    assert event.SerializeToString() == b"\x3a\x01x" + b"\x52\x06\x0a\x01k\x12\x01v"

    txn = runtime_pb2.ExecuteStateTransactionRequest(
        storeName="s",
        operations=[runtime_pb2.TransactionalStateOperation(operationType="upsert")],
    )
    assert txn.SerializeToString() == b"\x0a\x01s" + b"\x12\x08\x0a\x06upsert"

    next_id = runtime_pb2.GetNextIdResponse(next_id=2**40)
    assert runtime_pb2.GetNextIdResponse.FromString(next_id.SerializeToString()).next_id == 2**40

    hello = runtime_pb2.SayHelloRequest(service_name="h", data=any_pb2.Any(value=b"z"))
    assert hello.SerializeToString() == b"\x0a\x01h" + b"\x1a\x03\x12\x01z"


# ---------------------------------------------------------------------------
# generator


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "proto" / "generate.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
