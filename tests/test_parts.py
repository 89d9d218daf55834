"""A collection in parts (`shared.parts`), over HTTP with real processes: filled part by part as it
grows, each part sharded and indexed on its own, searched as one, with the same answers as the
same collection in one part."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.parts import part_key
from shared.shards import shard_of
from shared.testing import imagegen
from shared.testing.stack import Stack, db_url, private_db, serving, stack_env, start_api
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, error_code, make_collection, search
from tests.test_index import CORNERS, photo, reference

SEEDS = (41, 42, 43, 44, 45)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 4) as connection:
        yield connection


@pytest.fixture
def stacks(db: redis.Redis, tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """Two API processes on one Redis, blob store and worker: one fills parts of 2 images, the
    other keeps collections whole."""
    env = stack_env(db_url(db), tmp_path, RECOG_PART_IMAGES="2", RECOG_DEADLINE_MS="8000")
    with serving(env) as split:
        whole = start_api({**env, "RECOG_PART_IMAGES": "0"})
        try:
            yield split, whole
        finally:
            whole.stop()


def populated(stack: Stack) -> tuple[str, str]:
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        for seed in SEEDS:
            add_reference(admin, collection, imagegen.encode_jpeg(reference(seed), 92), f"poster-{seed}")
    return collection, token


def answer(stack: Stack, token: str, seed: int) -> list[tuple[str, float]]:
    with stack.client() as client:
        response = search(client, token, imagegen.encode_jpeg(photo(seed, CORNERS), 85))
    assert response.status_code == 200, response.text
    return [(r["item"]["name"], r["score"]) for r in response.json()["results"]]


def parts_of(stack: Stack, collection: str) -> Any:
    with stack.admin() as admin:
        return admin.get(f"/api/v0/collection/{collection}/").json().get("parts", 1)


def test_a_collection_in_parts_answers_as_the_same_collection_whole(stacks: tuple[Stack, Stack]) -> None:
    split, whole = stacks
    (in_parts, split_token), (in_one, whole_token) = populated(split), populated(whole)
    assert (parts_of(split, in_parts), parts_of(whole, in_one)) == (3, 1)
    for seed in SEEDS:
        for stack, token in ((whole, whole_token), (split, split_token)):
            wait_until(lambda st=stack, t=token, s=seed: top(st, t, s) == f"poster-{s}", 5, "the poster to be found")
        in_parts_answer, whole_answer = answer(split, split_token, seed), answer(whole, whole_token, seed)
        assert [name for name, _ in in_parts_answer] == [name for name, _ in whole_answer]
        assert [score for _, score in in_parts_answer] == pytest.approx([score for _, score in whole_answer])


def top(stack: Stack, token: str, seed: int) -> str | None:
    found = answer(stack, token, seed)
    return found[0][0] if found else None


def test_a_collection_in_parts_is_deleted_from_every_part(stacks: tuple[Stack, Stack], db: redis.Redis) -> None:
    split, _ = stacks
    collection, token = populated(split)
    with split.admin() as admin:
        assert admin.delete(f"/api/v0/collection/{collection}/").status_code == 204
    with split.client() as client:
        refused = search(client, token, imagegen.encode_jpeg(photo(SEEDS[0], CORNERS), 85))
    assert refused.status_code == 403
    assert [k for k in db.scan_iter() if collection.encode() in k] == []


def test_a_part_that_misses_the_deadline_makes_the_search_a_timeout(db: redis.Redis, tmp_path: Path) -> None:
    """Each part is answered by the workers of its own shard: one of them stalled, the search waits
    for it no longer than the deadline, answers 504, and counts it."""
    env = stack_env(db_url(db), tmp_path, RECOG_PART_IMAGES="2", RECOG_DEADLINE_MS="1500", RECOG_SHARDS="4")
    with serving(env) as stack:
        for _ in range(8):  # until its two parts land on two shards (3 times in 4)
            collection, token = populated(stack)
            second = shard_of(part_key(collection, 1), 4)
            if shard_of(collection, 4) != second:
                break
        stack.stop_workers()
        stack.start_worker(RECOG_WORKER_SHARDS=",".join(str(s) for s in range(4) if s != second))
        stalled = stack.start_worker(RECOG_WORKER_SHARDS=str(second))
        stack.wait_ready()
        wait_until(lambda: top(stack, token, SEEDS[2]) == f"poster-{SEEDS[2]}", 10, "the part's worker to answer")
        stalled.send_signal(signal.SIGSTOP)
        try:
            with stack.client() as client:
                started = time.monotonic()
                response = search(client, token, imagegen.encode_jpeg(photo(SEEDS[0], CORNERS), 85))
                seconds = time.monotonic() - started
                metrics = client.get("/metrics").text
        finally:
            stalled.send_signal(signal.SIGCONT)
    assert (response.status_code, error_code(response)) == (504, "TIMEOUT"), response.text
    assert seconds < 1.5 + 1.0
    assert "recog_search_parts_missed_total 1.0" in metrics
