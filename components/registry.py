"""Which component types exist, what metadata each accepts, and how to build one.

The supervisor validates configs against this table without importing any
backend library: factories are named by string and imported in the worker,
while each metadata key's reader is the very parser its backend or block
uses, kept in modules that import no redis-py, grpc or pynng.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from layotto.components import _redis_settings
from layotto.components.bindings import settings as binding_settings
from layotto.components.keys import KEY_PREFIX, check_prefix
from layotto.components.metadata import Read, free_text
from layotto.components.pubsub.settings import DELIVERY_READERS, MAX_LEN_KEY, max_len_approx
from layotto.components.rpc import settings as rpc_settings
from layotto.components.secretstores import local_file
from layotto.components.sequencer.segments import parse_step
from layotto.components.state._ops import TTL_KEY, default_ttl

KINDS = (
    "hellos",
    "state",
    "lock",
    "sequencer",
    "config_store",
    "pub_subs",
    "rpcs",
    "secret_store",
    "bindings",
)

_REDIS_KEYS = {
    "redisHost": "host:port of the Redis server (required)",
    "redisPassword": "password (optional)",
    "redisUsername": "ACL user name (optional)",
    "redisDB": "database number, default 0",
    "enableTLS": "true to connect with TLS, default false",
    "maxRetries": "retries of a failed Redis command, default 3",
    "maxRetryBackoff": "max back-off between retries in ms, default 2000",
    "dialTimeout": "connect timeout in ms, default 2000",
    "readTimeout": "command timeout in ms, default 3000",
}
_KEY_PREFIX = {"keyPrefix": "appid | name | none | any string without '||'"}
# Read by the pub/sub worker's delivery loops, not by the backend (Dapr's names).
_DELIVERY_KEYS = {
    "consumerID": "consumer group, default the app id: sidecars of one group share messages",
    "processingTimeout": "seconds a message may stay unacknowledged before another "
    "consumer claims it, default 60",
    "redeliverInterval": "seconds between scans for such messages, default 15",
    "maxDeliveryAttempts": "deliveries of an event before it goes to its dead-letter topic, "
    "default 10",
    "deadLetterTopic": 'where such events go, "{topic}" standing for their topic, default '
    '"{topic}-deadletter"; empty: they are dropped, with an error in the log',
}


@dataclass(frozen=True)
class ComponentType:
    kind: str
    type: str
    factory: str  # "module:function", called as factory(name, metadata, app_id)
    metadata: Mapping[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    # In-memory backends keep their data inside one worker process, so
    # running two replicas would split the data: config validation rejects it.
    single_process: bool = False
    # The parser of each key of ``metadata``, shared with the backend or block
    # that reads it: config validation runs it on every value given.
    readers: Mapping[str, Read] = field(default_factory=dict)
    # The factory also takes ``state_file=``: a file in the run directory that
    # outlives the worker process (what must survive a crash, such as the
    # in-memory sequencer's marks), or None.
    state_file: bool = False
    # Metadata keys whose value is a file path: a relative one is taken from
    # the config file's directory, made absolute at config load.
    paths: frozenset[str] = frozenset()


_REDIS = _redis_settings.READERS
_PREFIX: Mapping[str, Read] = {KEY_PREFIX: check_prefix}
_STEP: Mapping[str, Read] = {"segmentStep": parse_step}
_PUBSUB: Mapping[str, Read] = {**DELIVERY_READERS, MAX_LEN_KEY: max_len_approx}


_TYPES = [
    ComponentType(
        "hellos",
        "helloworld",
        "layotto.components.hello.helloworld:create",
        {"hello": "the greeting returned by SayHello"},
        readers={"hello": free_text},
    ),
    ComponentType(
        "state",
        "in-memory",
        "layotto.components.state.memory:create",
        _KEY_PREFIX,
        single_process=True,
        readers=_PREFIX,
    ),
    ComponentType(
        "state",
        "redis",
        "layotto.components.state.redis:create",
        {**_REDIS_KEYS, **_KEY_PREFIX, "ttlInSeconds": "default TTL of every key"},
        frozenset({"redisHost"}),
        readers={**_REDIS, **_PREFIX, TTL_KEY: default_ttl},
    ),
    ComponentType(
        "lock",
        "in-memory",
        "layotto.components.lock.memory:create",
        _KEY_PREFIX,
        single_process=True,
        readers=_PREFIX,
    ),
    ComponentType(
        "lock",
        "redis",
        "layotto.components.lock.redis:create",
        {**_REDIS_KEYS, **_KEY_PREFIX},
        frozenset({"redisHost"}),
        readers={**_REDIS, **_PREFIX},
    ),
    ComponentType(
        "sequencer",
        "in-memory",
        "layotto.components.sequencer.memory:create",
        {**_KEY_PREFIX, "segmentStep": "ids reserved per WEAK segment, default 10000"},
        single_process=True,
        readers={**_PREFIX, **_STEP},
        state_file=True,
    ),
    ComponentType(
        "sequencer",
        "redis",
        "layotto.components.sequencer.redis:create",
        {
            **_REDIS_KEYS,
            **_KEY_PREFIX,
            "segmentStep": "ids reserved per WEAK segment, default 10000",
        },
        frozenset({"redisHost"}),
        readers={**_REDIS, **_PREFIX, **_STEP},
    ),
]

_TYPES += [
    ComponentType(
        "config_store",
        "in-memory",
        "layotto.components.configuration.memory:create",
        single_process=True,
    ),
    ComponentType(
        "config_store",
        "redis",
        "layotto.components.configuration.redis:create",
        _REDIS_KEYS,
        frozenset({"redisHost"}),
        readers=_REDIS,
    ),
    ComponentType(
        "pub_subs",
        "in-memory",
        "layotto.components.pubsub.memory:create",
        {**_DELIVERY_KEYS, "maxLenApprox": "keep the last this many messages per topic (10000)"},
        single_process=True,
        readers=_PUBSUB,
    ),
    ComponentType(
        "pub_subs",
        "redis",
        "layotto.components.pubsub.redis:create",
        {
            **_REDIS_KEYS,
            **_DELIVERY_KEYS,
            "maxLenApprox": "keep about this many messages per topic stream (default: all)",
        },
        frozenset({"redisHost"}),
        readers={**_REDIS, **_PUBSUB},
    ),
]

_TYPES += [
    ComponentType(
        "rpcs",
        "http",
        "layotto.components.rpc.http:create",
        {
            rpc_settings.TARGETS_KEY: "JSON: service id -> base URL or list of base URLs "
            "(taken in turn) (required)",
            rpc_settings.TIMEOUT_KEY: "ms a call may take, default 3000 (or the caller's "
            "deadline, if sooner)",
        },
        frozenset({rpc_settings.TARGETS_KEY}),
        readers={
            rpc_settings.TARGETS_KEY: rpc_settings.parse_targets,
            rpc_settings.TIMEOUT_KEY: rpc_settings.parse_timeout,
        },
    ),
    ComponentType(
        "secret_store",
        "local.file",
        "layotto.components.secretstores.local_file:create",
        {
            local_file.FILE_KEY: "the JSON file of secrets (required); relative: to the "
            "config file's directory",
            local_file.SEPARATOR_KEY: "joins the keys of nested objects, default ':'",
            local_file.MULTI_KEY: "true: each top-level key is one secret of several values, "
            "default false",
        },
        frozenset({local_file.FILE_KEY}),
        readers={
            local_file.FILE_KEY: local_file.read_path,
            local_file.SEPARATOR_KEY: local_file.read_separator,
            local_file.MULTI_KEY: local_file.read_multi_valued,
        },
        paths=frozenset({local_file.FILE_KEY}),
    ),
    ComponentType(
        "secret_store",
        "local.env",
        "layotto.components.secretstores.local_env:create",
        {"prefix": "only variables with this prefix are secrets, named without it"},
        readers={"prefix": free_text},
    ),
]

# Output bindings (Dapr's bindings.http, bindings.redis, bindings.localstorage).
_TYPES += [
    ComponentType(
        "bindings",
        "http",
        "layotto.components.bindings.http:create",
        {"url": "the URL requests go to; request metadata path is appended to it (required)"},
        frozenset({"url"}),
        readers={"url": binding_settings.url},
    ),
    ComponentType(
        "bindings",
        "redis",
        "layotto.components.bindings.redis:create",
        _REDIS_KEYS,
        frozenset({"redisHost"}),
        readers=_REDIS,
    ),
    ComponentType(
        "bindings",
        "localstorage",
        "layotto.components.bindings.localstorage:create",
        {"rootPath": "the directory the files live in, absolute; created if missing (required)"},
        frozenset({"rootPath"}),
        readers={"rootPath": binding_settings.root_path},
    ),
]

TYPES: Mapping[tuple[str, str], ComponentType] = {(t.kind, t.type): t for t in _TYPES}


def types_of(kind: str) -> list[str]:
    return sorted(t.type for t in _TYPES if t.kind == kind)


def build(
    kind: str,
    type_: str,
    name: str,
    metadata: Mapping[str, str],
    app_id: str,
    *,
    state_file: str | None = None,
) -> Any:
    """Import the backend and construct it (worker side only). ``state_file``
    reaches only a factory whose type declares it takes one."""
    spec = TYPES[(kind, type_)]
    module_name, func_name = spec.factory.split(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), func_name)
    if spec.state_file and state_file:
        return factory(name, metadata, app_id, state_file=state_file)
    return factory(name, metadata, app_id)
