"""A worker with RECOG_WORKER_METRICS_PORT serves its own metrics, counting the searches it ran."""

from __future__ import annotations

from pathlib import Path

import httpx

from shared.processes import free_port
from shared.testing import imagegen
from shared.testing.stack import Stack
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, make_collection, search


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def test_worker_metrics_count_answered_searches_by_stage(stack: Stack) -> None:
    port = free_port()
    worker = stack.start_worker(RECOG_WORKER_METRICS_PORT=str(port))
    try:
        with stack.admin() as admin:
            collection, token = make_collection(admin)
            item, _ = add_reference(admin, collection, imagegen.encode_jpeg(imagegen.textured(60, 480, 360), 90))
        query = imagegen.encode_jpeg(imagegen.textured(60, 640, 480), 85)
        with stack.client() as client:
            wait_until(
                lambda: item in [r["item"]["uuid"] for r in search(client, token, query).json()["results"]],
                1.0,  # the contract: searchable within 1 s of the 201
                "the reference is searchable",
            )

            def answered_by_the_new_worker() -> str | None:
                """Its metrics once they count a search (the shard is shared by two workers now: this one
                answers some searches once it has started); None while it has not."""
                assert search(client, token, query).status_code == 200
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.ConnectError:
                    return None  # the worker is still starting
                return text if 'recog_worker_stage_seconds_count{stage="features"}' in text else None

            text = wait_until(answered_by_the_new_worker, 30, "the new worker answered a search", interval=0.2)
        assert 'recog_worker_jobs_total{outcome="answered"}' in text
        assert listening_addresses(port) == {"127.0.0.1"}  # loopback unless RECOG_WORKER_METRICS_HOST says
        assert 'recog_worker_stage_seconds_count{stage="features"}' in text
    finally:
        worker.terminate()
        worker.wait(timeout=15)
        stack.workers.remove(worker)
