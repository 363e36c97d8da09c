"""Redis lock store (Layotto's standalone ``redis`` lock).

Acquire is ``SET key owner NX PX ms``; unlock and keep-alive are Lua scripts so the
owner check and the DEL / PEXPIRE happen atomically on the server. Expiry is
Redis's own, so an expired lock is simply a missing key.
"""

from __future__ import annotations

from collections.abc import Mapping

from layotto.components import _redis
from layotto.components.lock.base import LockStatus, check_expire

# Both scripts answer with a LockStatus value: 0 SUCCESS, 1 LOCK_UNEXIST, 2 BELONG_TO_OTHERS.
_UNLOCK = """
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('DEL', KEYS[1])
return 0
"""
_KEEP_ALIVE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"""


class RedisLockStore:
    def __init__(self, metadata: Mapping[str, str], component: str) -> None:
        self._client = _redis.connect(metadata, component)
        self._address = metadata["redisHost"]
        self._probe = _redis.Probe(self._client, self._address)
        self._unlock = self._client.register_script(_UNLOCK)
        self._keep_alive = self._client.register_script(_KEEP_ALIVE)

    def try_lock(self, resource_id: str, owner: str, expire_seconds: int) -> bool:
        check_expire(expire_seconds)
        with _redis.translated(self._address):
            done = self._client.set(resource_id, owner, nx=True, px=expire_seconds * 1000)
        return bool(done)

    def unlock(self, resource_id: str, owner: str) -> LockStatus:
        with _redis.translated(self._address):
            answer = self._unlock(keys=[resource_id], args=[owner])
        return LockStatus(int(answer))

    def keep_alive(self, resource_id: str, owner: str, expire_seconds: int) -> LockStatus:
        check_expire(expire_seconds)
        with _redis.translated(self._address):
            answer = self._keep_alive(keys=[resource_id], args=[owner, expire_seconds * 1000])
        return LockStatus(int(answer))

    def ping(self) -> None:
        self._probe.ping()

    def close(self) -> None:
        self._client.close()
        self._probe.close()


def create(name: str, metadata: Mapping[str, str], app_id: str) -> RedisLockStore:
    return RedisLockStore(metadata, name)
