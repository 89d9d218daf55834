"""SERVER_BUSY and TIMEOUT, produced by an API process whose shards have no worker."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests import imagegen
from tests.conftest import Stack, free_port, recog_command, stack_env
from tests.stackclient import error_code, make_collection, search

DEADLINE_MS = 1500


@pytest.fixture(scope="module")
def stalled(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # A database of its own, so the main stack's worker cannot take these jobs.
    url = redis_url.rsplit("/", 1)[0] + "/14"
    connection = redis.Redis.from_url(url)
    connection.flushdb()
    port = free_port()
    env = stack_env(url, Path(tmp_path_factory.mktemp("stalled")), RECOG_DEADLINE_MS=str(DEADLINE_MS), RECOG_MAX_IN_FLIGHT="1")
    api = subprocess.Popen([*recog_command(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env)
    running = Stack(url=f"http://127.0.0.1:{port}", env=env, processes=[api])
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                httpx.get(f"{running.url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield running
    finally:
        running.stop()
        connection.flushdb()
        connection.close()


def test_no_worker_means_504_within_the_deadline_and_503_when_full(stalled: Stack) -> None:
    query = imagegen.encode_jpeg(imagegen.textured(5, 640, 480), 85)
    with stalled.admin() as admin:
        _, token = make_collection(admin)
    first: list[httpx.Response] = []

    def waiting_search() -> None:
        with stalled.client() as client:
            first.append(search(client, token, query))

    started = time.monotonic()
    thread = threading.Thread(target=waiting_search)
    thread.start()
    time.sleep(DEADLINE_MS / 3000)  # the first search is now waiting for a worker
    with stalled.client() as client:
        busy = search(client, token, query)
    thread.join()
    elapsed = time.monotonic() - started

    assert (busy.status_code, error_code(busy)) == (503, "SERVER_BUSY")
    assert int(busy.headers["Retry-After"]) >= 1
    assert (first[0].status_code, error_code(first[0])) == (504, "TIMEOUT")
    assert elapsed < DEADLINE_MS / 1000 + 2


def test_readyz_names_the_shards_without_workers(stalled: Stack) -> None:
    response = httpx.get(f"{stalled.url}/readyz")
    assert response.status_code == 503
    assert "shard" in response.json()["reason"]
