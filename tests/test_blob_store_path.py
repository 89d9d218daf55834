"""Reference data out of Redis, end to end over HTTP: a real API, real workers, a real Redis.

Features live in the blob store only; a worker on an empty disk rebuilds from it; a Redis that
holds features (an older version's) is migrated, by hand or on a worker's start; a sweep removes
what no image owns.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from shared import keys
from shared.blobs import FEATURES, LocalBlobStore, image_prefix
from shared.processes import free_port
from shared.testing import imagegen
from shared.testing.stack import Stack, db_url, private_db, recog_command, serving, stack_env
from shared.testing.wait import wait_until
from tests.stackclient import add_reference, error_code, make_collection, make_item, search, upload_image
from tests.test_index import CORNERS, photo, reference

SEEDS = (11, 12, 13)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 8) as connection:
        yield connection


@pytest.fixture
def running(db: redis.Redis, tmp_path: Path) -> Iterator[Stack]:
    env = stack_env(db_url(db), tmp_path, RECOG_SNAPSHOT_MIN_IMAGES="1", RECOG_DEADLINE_MS="8000")
    with serving(env) as stack:
        yield stack


def populate(stack: Stack) -> tuple[str, str, dict[int, tuple[str, str]]]:
    """A collection with one item per seed; returns its uuid, its token and (item, image) by seed."""
    with stack.admin() as admin:
        collection, token = make_collection(admin)
        added = {
            seed: add_reference(admin, collection, imagegen.encode_jpeg(reference(seed), 92), f"poster-{seed}")
            for seed in SEEDS
        }
    return collection, token, added


def top_item(stack: Stack, token: str, seed: int) -> str | None:
    with stack.client() as client:
        response = search(client, token, imagegen.encode_jpeg(photo(seed, CORNERS), 85))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    return results[0]["item"]["uuid"] if results else None


def all_found(stack: Stack, token: str, added: dict[int, tuple[str, str]]) -> bool:
    return all(top_item(stack, token, seed) == item for seed, (item, _) in added.items())


def run_recog(stack: Stack, *args: str) -> str:
    command = [*recog_command(), *args]
    done = subprocess.run(command, check=False, env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_an_upload_is_searchable_at_once_with_its_features_only_in_the_blob_store(
    running: Stack, db: redis.Redis, tmp_path: Path
) -> None:
    with running.admin() as admin:
        collection, token = make_collection(admin)
        data = imagegen.encode_jpeg(reference(21), 92)
        item, image = add_reference(admin, collection, data)
    created = time.monotonic()
    wait_until(lambda: top_item(running, token, 21) == item, timeout=1.0, what="the new reference to be found")
    assert time.monotonic() - created < 1.0
    features = (tmp_path / "blobs" / image_prefix(collection, item, image) / FEATURES).stat().st_size
    assert features > 20_000
    biggest = max((int(db.memory_usage(key) or 0), key) for key in db.scan_iter())
    assert biggest[0] < features / 2, f"{biggest[1]!r} is as large as the features"


def test_a_worker_on_an_empty_disk_rebuilds_every_index_from_the_blob_store(running: Stack, tmp_path: Path) -> None:
    _, token, added = populate(running)
    wait_until(lambda: all_found(running, token, added), timeout=5, what="the references to be found")
    running.stop_workers()
    running.start_worker()  # loads the collection and saves its index (RECOG_SNAPSHOT_MIN_IMAGES=1)
    running.wait_ready()
    assert any((tmp_path / "indexes").iterdir())
    running.stop_workers()
    shutil.rmtree(tmp_path / "indexes")  # a new machine: nothing on its disk

    running.start_worker()
    running.wait_ready()
    assert all_found(running, token, added)


def downgrade(db: redis.Redis, blobs: LocalBlobStore, collection: str, added: dict[int, tuple[str, str]]) -> None:
    """Puts the features back where versions before the blob store kept them: a hash in Redis."""
    for item, image in added.values():
        key = f"{image_prefix(collection, item, image)}/{FEATURES}"
        db.hset(keys.legacy_features(collection), image, blobs.get(key))
        os.unlink(blobs.path(key))
    db.delete(keys.collection_references(collection))


def test_features_kept_in_redis_are_moved_by_recog_migrate(running: Stack, db: redis.Redis, tmp_path: Path) -> None:
    collection, token, added = populate(running)
    running.stop_workers()
    downgrade(db, LocalBlobStore(tmp_path / "blobs"), collection, added)

    out = run_recog(running, "migrate")
    assert f"moved the features of {len(SEEDS)} image(s) of 1 collection(s)" in out
    assert not db.exists(keys.legacy_features(collection))
    assert db.hlen(keys.collection_references(collection)) == len(SEEDS)
    assert "moved the features of 0 image(s)" in run_recog(running, "migrate")  # nothing left: harmless

    running.start_worker()
    running.wait_ready()
    assert all_found(running, token, added)


def test_features_kept_in_redis_are_moved_when_a_worker_starts(running: Stack, db: redis.Redis, tmp_path: Path) -> None:
    collection, token, added = populate(running)
    running.stop_workers()
    downgrade(db, LocalBlobStore(tmp_path / "blobs"), collection, added)
    running.start_worker()
    running.wait_ready()
    assert not db.exists(keys.legacy_features(collection))
    assert all_found(running, token, added)


def test_an_upload_with_no_worker_running_is_refused_at_once(running: Stack, tmp_path: Path) -> None:
    with running.admin() as admin:
        collection, _ = make_collection(admin)
        running.stop_workers()
        started = time.monotonic()
        response = upload_image(admin, make_item(admin, collection), imagegen.encode_jpeg(reference(31), 92))
    assert (response.status_code, error_code(response)) == (503, "SERVER_BUSY"), response.text
    assert response.headers["Retry-After"] and time.monotonic() - started < 5  # not the 30 s upload timeout
    assert not (tmp_path / "blobs" / collection).exists()


def test_sweep_removes_only_files_no_image_owns(running: Stack, tmp_path: Path) -> None:
    collection, _, added = populate(running)
    blobs = LocalBlobStore(tmp_path / "blobs")
    item, image = added[SEEDS[0]]
    orphan = image_prefix(collection, item, "f" * 32)  # an upload whose catalogue entry was never written
    fresh = image_prefix(collection, item, "e" * 32)  # an upload in progress
    blobs.put(f"{orphan}/original.jpg", b"x")
    blobs.put(f"{fresh}/original.jpg", b"x")
    an_hour_ago = time.time() - 3600
    os.utime(blobs.path(f"{orphan}/original.jpg"), (an_hour_ago, an_hour_ago))
    kept = image_prefix(collection, item, image)
    os.utime(blobs.path(f"{kept}/{FEATURES}"), (an_hour_ago, an_hour_ago))

    out = run_recog(running, "sweep", "--grace", "600")
    assert f"removed 1 of {len(SEEDS) + 2} image folder(s)" in out
    assert not blobs.path(orphan).exists()
    assert blobs.path(fresh).exists() and blobs.path(f"{kept}/{FEATURES}").exists()


def test_searches_are_served_between_the_stages_of_uploads(running: Stack) -> None:
    """A worker preparing an upload serves the searches that arrive meanwhile between its stages,
    instead of making them wait for the whole upload (one worker here: no other could take them)."""
    _, token, added = populate(running)
    running.stop_workers()
    port = free_port()
    running.start_worker(RECOG_WORKER_METRICS_PORT=str(port))
    running.wait_ready()
    item = added[SEEDS[0]][0]
    uploads = [imagegen.encode_jpeg(imagegen.textured(100 + n, 1600, 1200), 95) for n in range(12)]
    with ThreadPoolExecutor(4) as pool, running.admin() as admin:
        uploaded = [pool.submit(upload_image, admin, item, data) for data in uploads]
        searched = [top_item(running, token, SEEDS[n % len(SEEDS)]) for n in range(12)]
        assert [f.result().status_code for f in uploaded] == [201] * len(uploads)
    assert searched == [added[SEEDS[n % len(SEEDS)]][0] for n in range(12)]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    [served] = [line for line in metrics.splitlines() if line.startswith("recog_worker_searches_during_uploads_total")]
    assert float(served.split()[-1]) > 0, "every search waited for whole uploads"


def upload_jobs(db: redis.Redis) -> list[bytes]:
    """The RQ hashes of upload jobs not finished (a worker stopped in its blocking pop still takes one)."""
    return [k for k in db.scan_iter(match="rq:job:*") if (db.hget(k, "description") or b"").startswith(b"ingest")]


def test_uploads_waiting_for_workers_are_bounded_per_api_process(db: redis.Redis, tmp_path: Path) -> None:
    """Each waiting upload holds a Redis connection the searches need too: past the bound, 503 at once."""
    env = stack_env(db_url(db), tmp_path, RECOG_MAX_UPLOADS_IN_FLIGHT="1", RECOG_INGEST_TIMEOUT_SECONDS="20")
    with serving(env) as stack, stack.admin() as admin, ThreadPoolExecutor(1) as pool:
        collection, _ = make_collection(admin)
        items = [make_item(admin, collection, f"poster-{n}") for n in range(2)]
        stalled = stack.workers[0]
        stalled.send_signal(signal.SIGSTOP)  # it still counts as live for a few seconds
        try:
            first = pool.submit(upload_image, admin, items[0], imagegen.encode_jpeg(reference(51), 92))
            wait_until(lambda: upload_jobs(db), 5, "the first upload to be queued")
            started = time.monotonic()
            second = upload_image(admin, items[1], imagegen.encode_jpeg(reference(52), 92))
            refused_in = time.monotonic() - started
        finally:
            stalled.send_signal(signal.SIGCONT)
        assert (second.status_code, error_code(second)) == (503, "SERVER_BUSY"), second.text
        assert "Too many uploads" in second.json()["error"]["message"] and refused_in < 2
        assert first.result().status_code == 201  # the one waiting is answered once the worker resumes
