"""A worker with RECOG_WORKER_METRICS_PORT serves its own metrics, counting the searches it ran."""

from __future__ import annotations

import time

import httpx

from shared.launcher import free_port
from shared.testing import imagegen
from shared.testing.stack import Stack
from tests.stackclient import add_reference, make_collection, search


def test_worker_metrics_count_answered_searches_by_stage(stack: Stack) -> None:
    port = free_port()
    worker = stack.start_worker(RECOG_WORKER_METRICS_PORT=str(port))
    try:
        with stack.admin() as admin:
            collection, token = make_collection(admin)
            add_reference(admin, collection, imagegen.encode_jpeg(imagegen.textured(60, 480, 360), 90))
        time.sleep(1.0)  # searchable from now on, by either worker
        end = time.monotonic() + 30
        text = ""
        with stack.client() as client:
            # The shard is shared by two workers now: search until this one has answered some.
            while time.monotonic() < end and 'recog_worker_stage_seconds_count{stage="features"}' not in text:
                assert (
                    search(client, token, imagegen.encode_jpeg(imagegen.textured(60, 640, 480), 85)).status_code == 200
                )
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.ConnectError:
                    time.sleep(0.2)  # the worker is still starting
        assert 'recog_worker_jobs_total{outcome="answered"}' in text
        assert 'recog_worker_stage_seconds_count{stage="features"}' in text
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        stack.workers.remove(worker)
