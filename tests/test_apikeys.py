"""API keys on fakeredis: stored as digests, listed without being shown, revoked by key or prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from shared import apikeys, keys

pytestmark = pytest.mark.anyio


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    connection = fakeredis.FakeAsyncRedis()
    yield connection
    await connection.aclose()


async def test_keys_are_stored_as_digests(redis: fakeredis.FakeAsyncRedis) -> None:
    await apikeys.ensure_admin_key(redis, "admin-key")
    made = await apikeys.create(redis)
    assert await apikeys.check(redis, "admin-key") and await apikeys.check(redis, made)
    assert not await apikeys.check(redis, "") and not await apikeys.check(redis, "guess")
    stored = {raw.decode() for raw in await redis.smembers(keys.APIKEYS)}
    assert "admin-key" not in stored and made not in stored and all(len(digest) == 64 for digest in stored)


async def test_listing_shows_prefixes_times_and_labels_never_keys(redis: fakeredis.FakeAsyncRedis) -> None:
    await apikeys.ensure_admin_key(redis, "admin-key-0123456789")
    await apikeys.ensure_admin_key(redis, "admin-key-0123456789")  # each API start: still one entry
    made = await apikeys.create(redis, label="ci")
    await redis.sadd(keys.APIKEYS, apikeys.digest("made-before-info-was-kept"))
    listed = await apikeys.listing(redis)
    assert {(info.prefix, info.label) for info in listed[:2]} == {
        ("admin-ke", apikeys.ADMIN_LABEL),
        (made[: apikeys.PREFIX_CHARS], "ci"),
    }
    assert (listed[2].prefix, listed[2].label) == ("", "")  # keys without info come last
    assert all(info.created_at or not info.prefix for info in listed)
    assert made not in repr(listed)


async def test_revoke_by_key_or_prefix(redis: fakeredis.FakeAsyncRedis) -> None:
    first, second = await apikeys.create(redis), await apikeys.create(redis)
    assert (await apikeys.revoke(redis, first)).prefix == first[:8]
    assert (await apikeys.revoke(redis, second[:8])).prefix == second[:8]
    assert not await apikeys.check(redis, first) and not await apikeys.check(redis, second)
    assert await apikeys.listing(redis) == []
    assert await redis.hlen(keys.APIKEY_INFO) == 0


@pytest.mark.parametrize("given", ["unknown-key-0123456789", "abc", ""])
async def test_revoking_what_matches_no_key_says_so(redis: fakeredis.FakeAsyncRedis, given: str) -> None:
    kept = await apikeys.create(redis)
    with pytest.raises(apikeys.KeyNotFound, match="no valid key"):
        await apikeys.revoke(redis, given)
    assert await apikeys.check(redis, kept)
