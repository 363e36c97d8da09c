"""Redis state store, compatible with Dapr's ``state.redis`` layout.

Every key is a hash ``{data, version}``; every write (set, delete, bulk, a
transaction) is one Lua script (``_redis_scripts.WRITE``, cached and run with
EVALSHA) that checks etags and writes in one atomic step, TTL included, so
check-and-set holds against any concurrent writer. All redis-py usage of the
state block lives here; its errors leave as ``BackendUnavailableError``
(unreachable) or ``ComponentError`` (anything else the server refused).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from layotto.components import _redis
from layotto.components._redis import connect
from layotto.components.state import _redis_scripts
from layotto.components.state._ops import (
    EXPIRE_TIME_KEY,
    Op,
    OpStore,
    Outcome,
    default_ttl,
    expire_time_text,
)
from layotto.components.state.base import BulkGetItem, Consistency, GetResponse

_Read = tuple[bytes | None, str | None, dict[str, str]]  # data, etag, metadata


class RedisStateStore(OpStore):
    def __init__(self, client: redis.Redis, address: str, default_ttl: int | None) -> None:
        super().__init__(default_ttl)
        self._client = client
        self._address = address
        self._probe = _redis.Probe(self._client, self._address)
        self._write = client.register_script(_redis_scripts.WRITE)
        self._read = client.register_script(_redis_scripts.READ)

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[bytes | str]) -> Any:
        """EVALSHA straight through the client: redis-py's Script.__call__
        showed as ~9 % of a state worker's CPU (py-spy) for work done here
        once: the script is loaded again only when the server lost it."""
        try:
            return self._client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            script.sha = self._client.script_load(script.script)
            return self._client.evalsha(script.sha, len(keys), *keys, *args)

    def run(self, ops: Sequence[Op], atomic: bool) -> list[Outcome]:
        args: list[bytes | str] = ["1" if atomic else "0"]
        for op in ops:
            args += [
                "u" if op.upsert else "d",
                "" if op.etag is None else str(op.etag),
                "1" if op.first_write else "0",
                op.data,
                str(op.ttl * 1000) if op.ttl else "0",
            ]
        with _redis.translated(self._address):
            codes: list[int] = self._run(self._write, [op.key for op in ops], args)
        return [Outcome(code) for code in codes]

    def _read_many(self, keys: Sequence[str]) -> list[_Read]:
        """(data, etag, metadata) per key; data None when the key is absent."""
        if not keys:
            return []
        with _redis.translated(self._address):
            flat: list[Any] = self._run(self._read, keys, ())
        now = time.time()
        answers: list[_Read] = []
        for at in range(0, len(flat), 3):
            data, version, pttl = flat[at : at + 3]
            if data is None:
                answers.append((None, None, {}))
                continue
            metadata = {EXPIRE_TIME_KEY: expire_time_text(now + pttl / 1000)} if pttl > 0 else {}
            answers.append((data, None if version is None else version.decode(), metadata))
        return answers

    def get(self, key: str, consistency: Consistency = Consistency.UNSPECIFIED) -> GetResponse:
        data, etag, metadata = self._read_many([key])[0]
        return GetResponse(data, etag, metadata)

    def bulk_get(self, keys: Sequence[str]) -> list[BulkGetItem]:
        return [
            BulkGetItem(key, data, etag, metadata=metadata)
            for key, (data, etag, metadata) in zip(keys, self._read_many(keys), strict=True)
        ]

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        self._client.close()
        self._probe.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisStateStore:
    ttl = default_ttl(metadata, name)
    return RedisStateStore(connect(metadata, name), metadata["redisHost"].strip(), ttl)
