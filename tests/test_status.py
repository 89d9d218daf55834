"""`recog status` on a real Redis (database 9): heartbeats written by the worker's own `beat`, jobs
queued through RQ as the API queues them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.utils import utcformat

from shared import keys, queues, status
from shared.cli import build_parser
from shared.codec import SEARCH_FUNCTION as JOB_FUNCTION
from shared.codec import MsgpackSerializer
from shared.redaction import redacted_url
from shared.shards import queue_name
from shared.testing.stack import db_url, private_db, recog_command
from workers import heartbeat
from workers.jobs import WorkerContext
from workers.ownership import ShardManager
from workers.shard_state import ShardState

SHARDS = 4


@dataclass
class FakeState:
    counts: dict[int, int]

    def images_per_shard(self) -> dict[int, int]:
        return self.counts


@dataclass
class FakeManager:
    listening: frozenset[int]
    load_seconds: dict[int, float] = field(default_factory=dict)
    settled: bool = True


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 9) as connection:
        yield connection


def beat(db: redis.Redis, name: str, images: dict[int, int], done: int = 0, age: float = 0.0) -> None:
    """A heartbeat through the worker's own code; `age` seconds old (a stale one: the worker died)."""
    context = WorkerContext(
        name=name,
        state=cast(ShardState, FakeState(images)),
        manager=cast(ShardManager, FakeManager(frozenset(images), {shard: 0.25 for shard in images})),
        connection=db,
        reply_ttl_seconds=30,
        shards=SHARDS,
        done=done,
    )
    heartbeat.beat(context)
    if age:
        db.zadd(keys.WORKERS, {name: time.time() - age})


def enqueue(db: redis.Redis, shard: int, count: int, age: float = 0.0) -> list[Job]:
    """`count` search jobs as the API queues them, the first one queued `age` seconds ago."""
    queue = Queue(queue_name(shard), connection=db, serializer=MsgpackSerializer)
    jobs = [queue.enqueue_call(JOB_FUNCTION, args=(b"job",), ttl=60, result_ttl=0) for _ in range(count)]
    if age:
        db.hset(jobs[0].key, "enqueued_at", utcformat(datetime.now(UTC) - timedelta(seconds=age)))
    return jobs


@pytest.fixture
def busy(db: redis.Redis) -> redis.Redis:
    """Shard 0: two jobs, the oldest 30 s old, one live owner. Shard 1: two live owners, three
    uploads waiting. Shard 3: one job whose hash has expired. Nobody live serves shards 2 and 3;
    the stale worker did."""
    beat(db, "worker-a", {0: 120, 1: 30}, done=7)
    beat(db, "worker-b", {1: 40})
    beat(db, "worker-dead", {0: 500, 2: 9, 3: 9}, age=60)
    enqueue(db, 0, 2, age=30)
    (expired,) = enqueue(db, 3, 1)
    db.delete(expired.key)  # as its TTL would
    db.rpush(queues.ingest_queue_key(1), "u1", "u2", "u3")
    db.sadd(keys.shard_collections(0), "c1", "c2")
    db.sadd(keys.shard_collections(1), "c3")
    return db


def status_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_")}
    return {**env, "REDIS_URL": redis_url, "RECOG_SHARDS": str(SHARDS)}


def recog_status(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*recog_command(), "status", *args]
    return subprocess.run(command, env=status_env(redis_url), capture_output=True, text=True, timeout=30, check=False)


def by_shard(document: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {s["shard"]: s for s in document["shards"]}


def test_json_names_depth_age_owners_collections_and_images(busy: redis.Redis) -> None:
    result = recog_status(db_url(busy), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    shards = by_shard(document)
    assert sorted(shards) == list(range(SHARDS))
    assert (shards[0]["queued"], shards[0]["owners"], shards[0]["collections"], shards[0]["images"]) == (
        2,
        ["worker-a"],
        2,
        120,
    )
    assert 30 <= shards[0]["oldest_job_age_seconds"] < 40
    assert (shards[1]["queued"], shards[1]["owners"], shards[1]["images"]) == (0, ["worker-a", "worker-b"], 40)
    assert [shards[s]["uploads"] for s in range(SHARDS)] == [0, 3, 0, 0]
    assert shards[1]["oldest_job_age_seconds"] is None
    assert shards[2]["owners"] == [] and shards[2]["images"] == 0  # the stale worker's 9 images do not count
    assert (shards[3]["queued"], shards[3]["oldest_job_age_seconds"]) == (1, None)


def test_json_lists_every_worker_live_ones_first(busy: redis.Redis) -> None:
    workers = json.loads(recog_status(db_url(busy), "--json").stdout)["workers"]
    assert [(w["name"], w["live"]) for w in workers] == [("worker-a", True), ("worker-b", True), ("worker-dead", False)]
    first = workers[0]
    assert (first["shards"], first["jobs_done"], first["images"], first["pid"]) == (
        [0, 1],
        7,
        {"0": 120, "1": 30},
        os.getpid(),
    )
    assert first["load_seconds"] == {"0": 0.25, "1": 0.25}
    assert first["last_beat_age_seconds"] < 5 and first["rss_kb"] > 0
    assert 60 <= workers[2]["last_beat_age_seconds"] < 70


def test_table_names_the_same(busy: redis.Redis) -> None:
    result = recog_status(db_url(busy))
    assert result.returncode == 0, result.stderr
    title, shard_table, worker_table = result.stdout.rstrip("\n").split("\n\n")
    assert title.endswith("4 shards, 2 live workers, 1 stale")
    rows = [line.split() for line in shard_table.splitlines()]
    assert rows[0] == ["shard", "queued", "oldest", "uploads", "owners", "collections", "images"]
    assert rows[1] == ["0", "2", rows[1][2], "0", "worker-a", "2", "120"] and rows[1][2].startswith("3")
    assert rows[2] == ["1", "0", "-", "3", "worker-a,worker-b", "1", "40"]
    assert rows[3] == ["2", "0", "-", "0", "NONE", "0", "0"]
    assert rows[4] == ["3", "1", "expired", "0", "NONE", "0", "0"]
    workers = [line.split()[:5] for line in worker_table.splitlines()[1:]]
    assert workers == [
        ["worker-a", "live", "0,1", "7", "0"],
        ["worker-b", "live", "1", "0", "0"],
        ["worker-dead", "stale", "0,2,3", "0", "0"],
    ]


def test_a_worker_whose_hash_expired_is_listed_stale_without_fields(db: redis.Redis) -> None:
    db.zadd(keys.WORKERS, {"gone": time.time() - 600})
    snapshot = status.read(db, SHARDS)
    assert [(w.name, w.shards, w.is_live(snapshot.taken_at)) for w in snapshot.workers] == [("gone", (), False)]
    assert status.render(snapshot).splitlines()[-1].split() == ["gone", "stale", "-", "0", "0", "10m00s", "-"]


def test_watch_redraws_until_ctrl_c(db: redis.Redis) -> None:
    watching = subprocess.Popen(
        [*recog_command(), "status", "--watch", "0.1", "--json"],
        env=status_env(db_url(db)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that starts background jobs makes them ignore SIGINT; a terminal user's Ctrl-C is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads here
    )
    try:
        assert watching.stdout is not None
        first = json.loads(watching.stdout.readline())
        beat(db, "late-worker", {2: 5})
        while not json.loads(watching.stdout.readline())["workers"]:
            pass
        watching.send_signal(signal.SIGINT)
        _, errors = watching.communicate(timeout=10)
    finally:
        if watching.poll() is None:
            watching.kill()
            watching.communicate()
    assert watching.returncode == 0 and errors == f"recog: using Redis {redacted_url(db_url(db))} (REDIS_URL)\n"
    assert first["workers"] == []


def test_redis_down_is_exit_1_with_one_line_after_naming_it() -> None:
    result = recog_status("redis://127.0.0.1:1/0")
    assert result.returncode == 1 and result.stdout == ""
    named, failed = result.stderr.splitlines()
    assert named == "recog: using Redis redis://127.0.0.1:1/0 (REDIS_URL)"
    assert failed.startswith("recog: Redis failed:")


@pytest.mark.parametrize(("argv", "watch"), [([], None), (["--watch"], 2.0), (["--watch", "0.5"], 0.5)])
def test_watch_defaults_to_2_seconds(argv: list[str], watch: float | None) -> None:
    assert build_parser().parse_args(["status", *argv]).watch == watch


@pytest.mark.parametrize("interval", ["0", "-1", "soon"])
def test_a_bad_watch_interval_exits_2(interval: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["status", "--watch", interval])
    assert exited.value.code == 2
