from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.redis_server import RedisServer, running_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_addr(redis_server: RedisServer) -> Iterator[str]:
    """Address of the private Redis, emptied before each test."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushall()
    client.close()
    yield redis_server.address


@pytest.fixture
def redis_client(redis_addr: str, redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client of the private Redis, to look at or change what a store wrote."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield client
    client.close()
