"""A worker's saved indexes: opened on the next start, brought up to date from the event stream."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
import redis

from shared import keys
from shared.blobs import FEATURES, ORIGINAL, LocalBlobStore, image_prefix
from shared.codec import IndexEvent, encode_event, encode_feature_record
from shared.testing import imagegen
from shared.testing.stack import private_db
from tests.test_index import features_of, photo, reference
from workers.decode import decode_gray
from workers.features import extract
from workers.index import CollectionIndex
from workers.shard_state import ShardState
from workers.snapshots import Snapshots
from workers.tuning import DEFAULT, RecognitionSettings, extraction_id

COLLECTION = "c0ffee"


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 6) as connection:
        yield connection


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def prefix(seed: int) -> str:
    return image_prefix(COLLECTION, f"item-{seed}", f"img-{seed}")


def upload(db: redis.Redis, blobs: LocalBlobStore, seed: int, extraction: str | None = None) -> None:
    """What an upload leaves behind: the original and its features (extracted under the settings of
    `extraction`, default this worker's) in the blob store, then the image among the collection's
    references and an `add` event."""
    blobs.put(f"{prefix(seed)}/{ORIGINAL}", imagegen.encode_jpeg(reference(seed), 92))
    record = encode_feature_record(f"item-{seed}", features_of(seed).to_bytes(), extraction or extraction_id())
    blobs.put(f"{prefix(seed)}/{FEATURES}", record)
    db.hset(keys.collection_references(COLLECTION), f"img-{seed}", f"item-{seed}")
    event = IndexEvent(op="add", collection=COLLECTION, image=f"img-{seed}", item=f"item-{seed}")
    db.xadd(keys.shard_events(0), encode_event(event))  # type: ignore[arg-type]


def delete(db: redis.Redis, blobs: LocalBlobStore, seed: int) -> None:
    db.hdel(keys.collection_references(COLLECTION), f"img-{seed}")
    db.xadd(keys.shard_events(0), encode_event(IndexEvent(op="remove", collection=COLLECTION, image=f"img-{seed}")))  # type: ignore[arg-type]
    blobs.delete_prefix(prefix(seed))


def found(state: ShardState, seed: int) -> list[str]:
    collection = state.get(COLLECTION)
    assert collection is not None
    query = extract(decode_gray(imagegen.encode_jpeg(photo(seed), 85)))
    return [collection.items[m.image_id] for m in collection.index.search(query)]


def wait_saved(root: Path, previous: str | None = None) -> str:
    current = root / COLLECTION / "CURRENT"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if current.exists() and current.read_text() != previous:
            return current.read_text()
        time.sleep(0.05)
    raise AssertionError("no snapshot was saved")


def test_restart_opens_the_snapshot_and_replays_what_changed_since(
    db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.sadd(keys.shard_collections(0), COLLECTION)
    for seed in (1, 2, 3):
        upload(db, blobs, seed)
    first = ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1))
    assert first.load_shard(0) == 3
    wait_saved(tmp_path)
    upload(db, blobs, 4)  # while the worker is down
    delete(db, blobs, 1)

    caplog.set_level(logging.INFO, "recog.worker.index")
    restarted = ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1))
    assert restarted.load_shard(0) == 3
    assert "opened the saved index" in caplog.text
    assert found(restarted, 4) == ["item-4"]
    assert found(restarted, 2) == ["item-2"]
    assert found(restarted, 1) == []


def test_snapshot_older_than_the_trimmed_stream_is_not_used(
    db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db.sadd(keys.shard_collections(0), COLLECTION)
    for seed in (1, 2):
        upload(db, blobs, seed)
    ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1)).load_shard(0)
    saved = wait_saved(tmp_path)
    delete(db, blobs, 2)
    upload(db, blobs, 3)
    db.xtrim(keys.shard_events(0), maxlen=1, approximate=False)  # the remove event is gone: replaying would miss it

    caplog.set_level(logging.INFO, "recog.worker.index")
    restarted = ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1))
    assert restarted.load_shard(0) == 2
    assert "opened the saved index" not in caplog.text
    assert found(restarted, 2) == [] and found(restarted, 3) == ["item-3"]
    assert wait_saved(tmp_path, saved) != saved  # and the full load was saved afresh


def test_a_built_collection_is_then_served_from_its_saved_files(
    db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    """The build's memory is given back: the worker maps the snapshot it just wrote, as a restarted
    one would, and keeps indexing new uploads beside it."""
    db.sadd(keys.shard_collections(0), COLLECTION)
    for seed in (1, 2):
        upload(db, blobs, seed)
    state = ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1))
    state.load_shard(0)
    saved = tmp_path / COLLECTION / wait_saved(tmp_path)
    assert str(saved / "postings.faissb") in Path("/proc/self/maps").read_text()
    assert found(state, 1) == ["item-1"] and found(state, 2) == ["item-2"]
    upload(db, blobs, 3)
    state.apply(IndexEvent(op="add", collection=COLLECTION, image="img-3", item="item-3"))
    assert found(state, 3) == ["item-3"]


def test_small_collections_are_not_saved(db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path) -> None:
    db.sadd(keys.shard_collections(0), COLLECTION)
    upload(db, blobs, 1)
    ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=2)).load_shard(0)  # saves, when it does, before it returns
    assert not (tmp_path / COLLECTION).exists()


@pytest.mark.parametrize("other", [replace(DEFAULT, tilt_degrees=55.0), replace(DEFAULT, code_bits=128)])
def test_snapshot_saved_under_other_settings_is_rebuilt(
    db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture, other: RecognitionSettings
) -> None:
    db.sadd(keys.shard_collections(0), COLLECTION)
    for seed in (1, 2):
        upload(db, blobs, seed)
    # A worker with other settings saved the collection, up to date with the stream.
    stale = CollectionIndex(other)
    stale.add("img-1", features_of(1))
    [(last, _)] = cast(list[tuple[bytes, dict[bytes, bytes]]], db.xrevrange(keys.shard_events(0), count=1))
    cursor = last.decode()
    Snapshots(tmp_path, min_images=1).save(COLLECTION, stale, {"img-1": "item-1"}, cursor)
    saved = wait_saved(tmp_path)

    caplog.set_level(logging.INFO, "recog.worker")
    state = ShardState(db, blobs, 1, Snapshots(tmp_path, min_images=1))
    assert state.load_shard(0) == 2
    assert "not opening the saved index of collection c0ffee (rebuilding it)" in caplog.text
    assert "opened the saved index" not in caplog.text
    assert found(state, 1) == ["item-1"] and found(state, 2) == ["item-2"]
    rebuilt = wait_saved(tmp_path, saved)  # saved afresh under this worker's settings: the next start opens it
    assert len(CollectionIndex.open(tmp_path / COLLECTION / rebuilt)) == 2
