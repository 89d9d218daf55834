"""SERVER_BUSY and TIMEOUT, produced by an API process whose shards have no worker, a hung
worker (a heartbeat that never takes jobs), or more searches in flight than can be answered in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from api.admission import REFRESH_SECONDS as ADMISSION_REFRESH_SECONDS
from shared import keys
from shared.queues import queue_key
from shared.shards import shard_of
from shared.testing import imagegen
from shared.testing.stack import Stack, db_url, private_db, stack_env, start_api
from shared.testing.wait import wait_until
from tests.stackclient import error_code, make_collection, search

DEADLINE_MS = 1500
SHARDS = 4


@pytest.fixture(scope="module")
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 14) as connection:  # so the main stack's worker cannot take these jobs
        yield connection


@pytest.fixture(scope="module")
def stalled(db: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = stack_env(
        db_url(db), tmp_path_factory.mktemp("stalled"), RECOG_DEADLINE_MS=str(DEADLINE_MS), RECOG_MAX_IN_FLIGHT="1"
    )
    running = start_api(env)
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def hung_worker(db: redis.Redis, api: Stack) -> Iterator[None]:
    """A heartbeat for every shard from a worker that never takes a job, seen by `api`'s admission."""
    stop = threading.Event()
    name = "hung-worker"

    def beat() -> None:
        while not stop.is_set():
            db.hset(keys.worker(name), mapping={"name": name, "shards": ",".join(map(str, range(SHARDS)))})
            db.zadd(keys.WORKERS, {name: time.time()})
            stop.wait(0.5)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        wait_until(
            lambda: httpx.get(f"{api.url}/readyz").status_code == 200,
            10,
            "the API reads a live worker for every shard from the hung worker's heartbeat",
        )
        # Admission reuses its read of the shards' workers for this long; nothing shows when a read
        # taken before the heartbeat expires, so wait it out.
        time.sleep(ADMISSION_REFRESH_SECONDS)
        yield
    finally:
        stop.set()
        thread.join()
        db.delete(keys.worker(name))
        db.zrem(keys.WORKERS, name)


def query() -> bytes:
    return imagegen.encode_jpeg(imagegen.textured(5, 640, 480), 85)


def test_no_live_worker_is_503_at_once(stalled: Stack) -> None:
    with stalled.admin() as admin:
        _, token = make_collection(admin)
    with stalled.client() as client:
        started = time.monotonic()
        response = search(client, token, query())
    assert (response.status_code, error_code(response)) == (503, "SERVER_BUSY")
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < DEADLINE_MS / 1000


def test_hung_worker_is_504_by_the_deadline_and_503_when_in_flight_is_full(stalled: Stack, db: redis.Redis) -> None:
    with stalled.admin() as admin:
        collection, token = make_collection(admin)
    first: list[httpx.Response] = []

    def waiting_search() -> None:
        with stalled.client() as client:
            first.append(search(client, token, query()))

    with hung_worker(db, stalled):
        started = time.monotonic()
        thread = threading.Thread(target=waiting_search)
        thread.start()
        # Within half the deadline, so the second search comes while the first still holds the slot.
        wait_until(
            lambda: db.llen(queue_key(shard_of(collection, SHARDS))) > 0,
            DEADLINE_MS / 2000,
            "the first search is queued for the hung worker (holding the one in-flight slot)",
        )
        with stalled.client() as client:
            busy = search(client, token, query())
        thread.join()
        elapsed = time.monotonic() - started

    assert (busy.status_code, error_code(busy)) == (503, "SERVER_BUSY")
    assert (first[0].status_code, error_code(first[0])) == (504, "TIMEOUT")
    assert elapsed < DEADLINE_MS / 1000 + 2


def test_searches_in_flight_from_other_processes_count_against_the_limit(stalled: Stack, db: redis.Redis) -> None:
    """200 searches admitted by other API processes and still unanswered: one worker cannot
    answer another before the deadline, so this one is refused at once, and nothing is queued."""
    with stalled.admin() as admin:
        collection, token = make_collection(admin)
    shard = shard_of(collection, SHARDS)
    leases = {f"elsewhere-{n}": time.time() + 60 for n in range(200)}
    db.zadd(keys.shard_in_flight(shard), leases)
    db.zadd(keys.IN_FLIGHT, leases)
    try:
        queued = db.llen(queue_key(shard))  # what an earlier test's search may have left there
        with hung_worker(db, stalled), stalled.client() as client:
            started = time.monotonic()
            response = search(client, token, query())
            assert db.llen(queue_key(shard)) == queued
    finally:
        db.delete(keys.shard_in_flight(shard), keys.IN_FLIGHT)
    assert (response.status_code, error_code(response)) == (503, "SERVER_BUSY")
    assert time.monotonic() - started < 0.5
    assert int(response.headers["Retry-After"]) >= 1


def test_readyz_names_the_shards_without_workers(stalled: Stack) -> None:
    response = httpx.get(f"{stalled.url}/readyz")
    assert response.status_code == 503
    assert "shard" in response.json()["reason"]
