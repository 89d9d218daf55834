"""A frozen Redis (SIGSTOP) costs a request its deadline at most: searches are refused with 503
SERVER_BUSY, /readyz says not ready and /metrics still answers, each within about a second.

Real processes on a Redis of this test's own, since it is frozen.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.private_redis import PrivateRedis, find_redis_server
from shared.testing import imagegen
from shared.testing.stack import Stack, serving, stack_env
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, error_code, make_collection, search

DEADLINE_MS = 1000
CORNERS = np.array([[100, 60], [540, 90], [90, 430], [560, 410]], dtype=np.float32)


@pytest.fixture
def frozen_stack(tmp_path: Path) -> Iterator[tuple[Stack, PrivateRedis]]:
    server = PrivateRedis.start(find_redis_server(), tmp_path / "redis")
    try:
        env = stack_env(server.url, tmp_path / "data", RECOG_SHARDS="2", RECOG_DEADLINE_MS=str(DEADLINE_MS))
        with serving(env) as stack:
            yield stack, server
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()


def timed(call: httpx.Client, method: str, path: str, **kwargs: object) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call.request(method, path, **kwargs)  # type: ignore[arg-type]
    return response, time.monotonic() - started


def test_a_frozen_redis_is_a_fast_503_not_a_hang(frozen_stack: tuple[Stack, PrivateRedis]) -> None:
    stack, server = frozen_stack
    reference = imagegen.textured(81, 480, 360)
    photo = imagegen.encode_jpeg(imagegen.place(imagegen.clutter(81, 640, 480), reference, CORNERS), 88)
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        add_reference(admin, collection, imagegen.encode_jpeg(reference, 92))
    with stack.client() as client:
        wait_until(lambda: search(client, token, photo).status_code == 200, 5, "the reference is searchable")

    server.process.send_signal(signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(max_workers=6) as pool, stack.client() as client:
            searches = [pool.submit(lambda: timed_search(stack, token, photo)) for _ in range(4)]
            ready = pool.submit(timed, client, "GET", "/readyz")
            scraped = pool.submit(timed, client, "GET", "/metrics")
            outcomes = [future.result() for future in searches]
            readyz, readyz_seconds = ready.result()
            metrics, metrics_seconds = scraped.result()
    finally:
        server.process.send_signal(signal.SIGCONT)

    for response, seconds in outcomes:
        assert (response.status_code, error_code(response)) == (503, "SERVER_BUSY"), response.text
        assert response.headers["Retry-After"]
        assert seconds < DEADLINE_MS / 1000 + 1.0
    assert readyz.status_code == 503 and readyz_seconds < 2.0
    assert metrics.status_code == 200 and metrics_seconds < 2.0 and "recog_requests_total" in metrics.text
    assert "recog_redis_up 0.0" in metrics.text  # what the Redis-down alert reads
    with stack.client() as client:  # and once Redis is back, searches are answered again
        wait_until(lambda: search(client, token, photo).status_code == 200, 10, "searches are answered again")
        scraped_again = client.get("/metrics").text
    assert "recog_redis_up 1.0" in scraped_again
    assert (
        float(
            next(
                line for line in scraped_again.splitlines() if line.startswith("recog_redis_used_memory_bytes")
            ).split()[1]
        )
        > 0
    )


def timed_search(stack: Stack, token: str, photo: bytes) -> tuple[httpx.Response, float]:
    with stack.client() as client:
        started = time.monotonic()
        response = search(client, token, photo)
        return response, time.monotonic() - started
