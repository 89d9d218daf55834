"""A burst of concurrent uploads keeps the one-second promise, and searches during it are answered.

Real processes: the API and two workers on a Redis database of their own. Fifty reference images
are uploaded at once; one second after its own 201, each is looked for with a photo of it, while
the other uploads are still going on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import redis

from shared.testing import imagegen
from shared.testing.stack import Stack, db_url, private_db, serving, stack_env, wait_converged
from shared.testing.wait import wait_until
from tests.stackclient import make_collection, make_item, search, upload_image

UPLOADS = 50
DEADLINE_MS = 3000
CORNERS = np.array([[100, 60], [540, 90], [90, 430], [560, 410]], dtype=np.float32)


@pytest.fixture
def pair(redis_url: str, tmp_path: Path) -> Iterator[tuple[Stack, redis.Redis]]:
    with private_db(redis_url, 12) as db:
        env = stack_env(db_url(db), tmp_path, RECOG_SHARDS="4", RECOG_DEADLINE_MS=str(DEADLINE_MS))
        with serving(env) as stack:
            stack.start_worker()
            wait_converged(db, 2, 4, 2, timeout=30)
            yield stack, db


def found_first(stack: Stack, token: str, photo: bytes) -> tuple[int, list[str], float]:
    with stack.client() as client:
        started = time.monotonic()
        response = search(client, token, photo)
        seconds = time.monotonic() - started
    return response.status_code, [r["item"]["uuid"] for r in response.json().get("results", [])[:1]], seconds


def photo_of(seed: int, reference: np.ndarray) -> bytes:
    return imagegen.encode_jpeg(imagegen.place(imagegen.clutter(seed, 640, 480), reference, CORNERS), 88)


def test_fifty_concurrent_uploads_are_each_searchable_a_second_after_their_201(
    pair: tuple[Stack, redis.Redis],
) -> None:
    stack, _ = pair
    seeds = range(200, 200 + UPLOADS)
    references = {seed: imagegen.textured(seed, 480, 360) for seed in range(199, 200 + UPLOADS)}
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        items = {seed: make_item(admin, collection, f"poster {seed}") for seed in references}
        assert upload_image(admin, items[199], imagegen.encode_jpeg(references[199], 92)).status_code == 201
    steady_photo = photo_of(199, references[199])
    wait_until(lambda: found_first(stack, token, steady_photo)[1] == [items[199]], 1.0, "the first poster is found")

    # Searches for the first poster all through the burst, one after another, as a user would.
    steady: list[tuple[int, list[str], float]] = []
    burst_over = threading.Event()

    def search_meanwhile() -> None:
        while not burst_over.is_set():
            steady.append(found_first(stack, token, steady_photo))

    created: queue.Queue[tuple[float, int, int]] = queue.Queue()

    def upload(seed: int) -> None:
        with stack.admin() as admin:
            response = upload_image(admin, items[seed], imagegen.encode_jpeg(references[seed], 92))
        created.put((time.monotonic(), seed, response.status_code))

    searching = threading.Thread(target=search_meanwhile)
    searching.start()
    checked: dict[int, tuple[int, tuple[int, list[str], float]]] = {}
    try:
        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            for seed in seeds:
                pool.submit(upload, seed)
            # Each poster is looked for one second after its own 201 (or as soon after as the
            # checks before it allow: they run one at a time, in the order the 201s came).
            for _ in seeds:
                answered_at, seed, status = created.get(timeout=120)
                time.sleep(max(0.0, answered_at + 1.0 - time.monotonic()))
                checked[seed] = (status, found_first(stack, token, photo_of(seed, references[seed])))
    finally:
        burst_over.set()
        searching.join()

    assert all(status == 201 for status, _ in checked.values()), checked
    missed = {seed: outcome for seed, (_, outcome) in checked.items() if outcome[:2] != (200, [items[seed]])}
    assert not missed, missed
    assert steady and all(outcome[:2] == (200, [items[199]]) for outcome in steady), steady
    assert all(seconds < DEADLINE_MS / 1000 for _, _, seconds in steady)
