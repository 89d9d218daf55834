"""Under load and faults, every search gets its answer or a fast refusal, never a late timeout.

Real processes on a Redis database of their own: a burst of concurrent searches beyond what one
worker can answer in time is cut into 200s and quick 503s; a worker that stops or dies holding a
search does not cost its client the deadline while a replica of the shard is idle.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from rq import Queue

from shared.codec import MsgpackSerializer
from shared.shards import queue_name
from shared.testing import imagegen
from shared.testing.stack import Stack, db_url, private_db, serving, stack_env, wait_converged
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, error_code, make_collection, search

SHARDS = 4
CORNERS = np.array([[100, 60], [540, 90], [90, 430], [560, 410]], dtype=np.float32)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 11) as connection:
        yield connection


def indexed(stack: Stack, seed: int) -> tuple[str, bytes, str]:
    """A collection with one reference; returns its token, a photo of it and the item to find."""
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        item, _ = add_reference(admin, collection, imagegen.encode_jpeg(imagegen.textured(seed, 480, 360), 92))
    photo = imagegen.place(imagegen.clutter(seed, 640, 480), imagegen.textured(seed, 480, 360), CORNERS)
    return token, imagegen.encode_jpeg(photo, 88), item


def found(response: httpx.Response, item: str) -> bool:
    return response.status_code == 200 and [r["item"]["uuid"] for r in response.json()["results"][:1]] == [item]


def timed_search(stack: Stack, token: str, photo: bytes) -> tuple[httpx.Response, float]:
    with stack.client() as client:
        started = time.monotonic()
        response = search(client, token, photo)
        return response, time.monotonic() - started


def wait_searchable(stack: Stack, token: str, photo: bytes, item: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if found(timed_search(stack, token, photo)[0], item):
            return
    pytest.fail(f"the reference was not found within {timeout} s")


def requeued(stack: Stack) -> float:
    text = httpx.get(f"{stack.url}/metrics").text
    match = re.search(r"^recog_searches_requeued_total (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_a_burst_beyond_capacity_is_refused_fast_not_timed_out(db: redis.Redis, tmp_path: Path) -> None:
    deadline_ms = 1000
    env = stack_env(db_url(db), tmp_path, RECOG_SHARDS=str(SHARDS), RECOG_DEADLINE_MS=str(deadline_ms))
    with serving(env) as stack:
        token, photo, item = indexed(stack, 71)
        wait_searchable(stack, token, photo, item)
        with ThreadPoolExecutor(max_workers=60) as pool:
            outcomes = list(pool.map(lambda _: timed_search(stack, token, photo), range(60)))
    statuses = [response.status_code for response, _ in outcomes]
    assert statuses.count(504) <= 0.05 * len(statuses), statuses
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1, statuses
    assert all(found(response, item) for response, _ in outcomes if response.status_code == 200)
    refused = [(response, seconds) for response, seconds in outcomes if response.status_code == 503]
    assert all(error_code(response) == "SERVER_BUSY" and response.headers["Retry-After"] for response, _ in refused)
    # Refused instead of queued to time out (how fast is a bench figure: bench/overload.py). Most
    # are refused at the door, well before the deadline; a worker that takes a search it can no
    # longer finish answers SERVER_BUSY at once, which may be near the deadline. The times are the
    # client's: with both cores busy recognising, the last of 60 simultaneous uploads waits for the
    # API to read the others (up to ~1 s here), so the door is judged by its median.
    at_the_door = [seconds for r, seconds in refused if not r.json()["error"]["message"].startswith("The workers")]
    assert at_the_door and float(np.median(at_the_door)) < 0.75 * deadline_ms / 1000, sorted(at_the_door)
    assert all(seconds < deadline_ms / 1000 + 0.5 for _, seconds in refused), sorted(s for _, s in refused)[-5:]


@pytest.fixture
def pair(db: redis.Redis, tmp_path: Path) -> Iterator[Stack]:
    """The API and two workers, both serving every shard."""
    env = stack_env(db_url(db), tmp_path, RECOG_SHARDS=str(SHARDS), RECOG_REPLICAS="2", RECOG_DEADLINE_MS="3000")
    with serving(env) as stack:
        stack.start_worker()
        wait_converged(db, 2, SHARDS, 2, timeout=30)
        yield stack


@pytest.mark.parametrize("fault", [signal.SIGSTOP, signal.SIGKILL])
def test_a_search_held_by_a_stopped_or_killed_worker_is_answered_by_the_replica(
    pair: Stack, db: redis.Redis, fault: signal.Signals
) -> None:
    token, photo, item = indexed(pair, 72)
    wait_searchable(pair, token, photo, item)
    outcomes: list[tuple[httpx.Response, float]] = []
    # An idle worker waits in a blocking pop: stopped there, it still takes the next job it is
    # handed, and holds it. Concurrent searches right after the stop make sure one goes to it; it
    # is then killed (or left stopped) with that search in hand. A few tries: its pop may have
    # just timed out, or the other worker taken every search.
    for _ in range(5):
        victim = pair.workers[0]
        before = requeued(pair)
        victim.send_signal(signal.SIGSTOP)
        with ThreadPoolExecutor(max_workers=4) as pool:
            burst = [pool.submit(timed_search, pair, token, photo) for _ in range(4)]
            time.sleep(0.3)  # the searches are in the workers' hands by now
            if fault == signal.SIGKILL:
                victim.kill()
                victim.wait()
            outcomes += [future.result() for future in burst]
        took_one = requeued(pair) > before
        if fault == signal.SIGKILL:
            pair.workers.remove(victim)
            pair.start_worker()
            wait_converged(db, 2, SHARDS, 2, timeout=30)
        else:
            victim.send_signal(signal.SIGCONT)
        if took_one:
            break
    else:
        pytest.fail("the stopped worker never took a search")
    assert all(found(response, item) for response, _ in outcomes), [r.status_code for r, _ in outcomes]
    assert all(seconds < 3.0 for _, seconds in outcomes), [seconds for _, seconds in outcomes]


def test_a_worker_runs_nothing_but_searches(db: redis.Redis, tmp_path: Path) -> None:
    """A job naming another function (written by anyone who can reach Redis) is dropped, not run."""
    marker = tmp_path / "ran"
    env = stack_env(db_url(db), tmp_path / "data", RECOG_SHARDS=str(SHARDS))
    with serving(env) as stack:
        token, photo, item = indexed(stack, 73)
        queue = Queue(queue_name(0), connection=db, serializer=MsgpackSerializer)
        job = queue.enqueue("os.mkdir", str(marker))
        wait_until(lambda: not db.exists(job.key), 10, "the worker took the job")
        wait_searchable(stack, token, photo, item)  # and it still answers searches
    assert not marker.exists()
