"""The job function's answers, with its Redis and index replaced by small fakes (pure logic)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import fakeredis
import numpy as np
import pytest
from rq.job import Job

from shared import keys
from shared.codec import SearchJob, decode_reply, encode_job
from shared.shards import shard_of
from workers import jobs
from workers.index import Match
from workers.shard_state import Collection
from workers.tuning import DEFAULT


class BrokenIndex:
    settings = DEFAULT

    def __len__(self) -> int:
        return 1

    def search(self, *args: object) -> list[Match]:
        raise RuntimeError("a bug")


class FakeState:
    def __init__(self, collection: Collection | None) -> None:
        self.collection = collection

    def get(self, collection_id: str) -> Collection | None:
        return self.collection


@pytest.fixture
def connection() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeRedis()
    yield server
    jobs.CONTEXT = None


def run(connection: fakeredis.FakeRedis, collection: Collection | None, deadline: float) -> list[bytes]:
    jobs.CONTEXT = jobs.WorkerContext(
        name="w",
        state=FakeState(collection),
        manager=None,
        connection=connection,
        reply_ttl_seconds=30,  # type: ignore[arg-type]
        shards=4,
    )
    job = SearchJob(job_id="j", collection="c", image=b"not an image", deadline=deadline, reply_key="reply:j")
    jobs.search(encode_job(job))
    return list(connection.lrange("reply:j", 0, -1))


def test_unknown_collection_answers_nothing_found(connection: fakeredis.FakeRedis) -> None:
    [reply] = run(connection, None, time.time() + 5)
    assert decode_reply(reply).hits == [] and decode_reply(reply).error == ""
    assert connection.ttl("reply:j") > 0


def test_undecodable_image_answers_its_error_code(connection: fakeredis.FakeRedis) -> None:
    collection = Collection(shard=0)
    collection.index = BrokenIndex()  # type: ignore[assignment]
    [reply] = run(connection, collection, time.time() + 5)
    assert decode_reply(reply).error == "IMAGE_NOT_LOADED"


def test_a_bug_answers_server_error_at_once(connection: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    collection = Collection(shard=0)
    collection.index = BrokenIndex()  # type: ignore[assignment]
    monkeypatch.setattr(jobs, "recognize", lambda *args: BrokenIndex().search())
    [reply] = run(connection, collection, time.time() + 5)
    assert decode_reply(reply).error == "SERVER_ERROR"


def test_a_job_past_its_deadline_is_dropped_unanswered(connection: fakeredis.FakeRedis) -> None:
    assert run(connection, None, time.time() - 1) == []


def test_a_job_that_cannot_finish_in_time_is_answered_busy_at_once(connection: fakeredis.FakeRedis) -> None:
    [reply] = run(connection, None, time.time() + 0.001)  # less than the worker's usual search time
    assert decode_reply(reply).error == "SERVER_BUSY"


def test_answering_frees_the_admission_leases_and_the_job_hash(connection: fakeredis.FakeRedis) -> None:
    shard = shard_of("c", 4)
    connection.zadd(keys.shard_in_flight(shard), {"j": time.time() + 5})
    connection.zadd(keys.IN_FLIGHT, {"j": time.time() + 5, "other": time.time() + 5})
    connection.hset(Job.key_for("j"), "status", "queued")
    run(connection, None, time.time() + 5)
    assert connection.zcard(keys.shard_in_flight(shard)) == 0
    assert connection.zrange(keys.IN_FLIGHT, 0, -1) == [b"other"]
    assert not connection.exists(Job.key_for("j"))


def test_best_image_per_item_sorted_and_capped() -> None:
    corners = np.zeros((4, 2))
    matches = [
        Match("a1", 50.0, corners),
        Match("a2", 80.0, corners),
        Match("b1", 60.0, corners),
        Match("c1", 10.0, corners),
    ]
    job = SearchJob(job_id="j", collection="c", image=b"", deadline=0, reply_key="r", max_results=2, min_score=20)
    hits = jobs.best_per_item(matches, {"a1": "A", "a2": "A", "b1": "B", "c1": "C"}, job)
    assert [(h.item, h.image) for h in hits] == [("A", "a2"), ("B", "b1")]
