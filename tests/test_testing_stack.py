"""The test helpers' Redis URLs keep the password of the suite's Redis (which has one, as `recog up`'s)."""

from __future__ import annotations

import redis

from shared.testing.stack import db_url, private_db, with_db


def test_with_db_keeps_user_password_and_query() -> None:
    assert with_db("redis://u:p%40w@h:1/0?protocol=3", 7) == "redis://u:p%40w@h:1/7?protocol=3"
    assert with_db("redis://:pw@h:1", 7) == "redis://:pw@h:1/7"


def test_db_url_of_a_private_db_opens_it(redis_url: str) -> None:
    with private_db(redis_url, 5) as db:
        url = db_url(db)
        assert url.endswith("/5") and db.connection_pool.connection_kwargs["password"] in url
        with redis.Redis.from_url(url) as again:
            again.set("seen", "1")
        assert db.get("seen") == b"1"
