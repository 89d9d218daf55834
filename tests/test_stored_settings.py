"""A worker's index never mixes extractions: features stored under other settings are extracted again
from the originals (real Redis, a real blob store, as an upload leaves them)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis
from prometheus_client import REGISTRY

from shared import keys
from shared.blobs import FEATURES, ORIGINAL, LocalBlobStore
from shared.codec import IndexEvent, decode_feature_record
from shared.testing.stack import private_db
from tests.test_index import features_of
from tests.test_snapshots import COLLECTION, found, prefix, upload
from workers.shard_state import ShardState
from workers.snapshots import Snapshots
from workers.tuning import extraction_id

OTHER = "0123456789ab"  # the extraction digest of other settings


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 5) as connection:
        connection.sadd(keys.shard_collections(0), COLLECTION)
        yield connection


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def upload_unrecorded(db: redis.Redis, blobs: LocalBlobStore, seed: int) -> None:
    """A record as written before the extraction digest was recorded."""
    upload(db, blobs, seed)
    record = {"version": 1, "item": f"item-{seed}", "features": features_of(seed).to_bytes()}
    blobs.put(f"{prefix(seed)}/{FEATURES}", msgpack.packb(record, use_bin_type=True))


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def stored_digest(blobs: LocalBlobStore, seed: int) -> str | None:
    return decode_feature_record(blobs.get(f"{prefix(seed)}/{FEATURES}")).extraction


def test_features_of_other_settings_are_extracted_again_from_the_originals(
    db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upload(db, blobs, 1)
    upload(db, blobs, 2, extraction=OTHER)
    upload(db, blobs, 3, extraction=OTHER)
    upload_unrecorded(db, blobs, 4)
    upload(db, blobs, 5, extraction=OTHER)
    blobs.delete_prefix(prefix(5))  # its files were lost: nothing to extract from
    before = sample("recog_worker_reextracted_images_total")
    missing = sample("recog_worker_skipped_images_total", {"reason": "missing"})

    caplog.set_level(logging.INFO, "recog.worker")
    state = ShardState(db, blobs, 1, Snapshots(tmp_path / "indexes", min_images=1))
    assert state.load_shard(0) == 4
    for seed in (1, 2, 3, 4):
        assert found(state, seed) == [f"item-{seed}"]
    assert found(state, 5) == []
    assert [stored_digest(blobs, seed) for seed in (2, 3)] == [extraction_id()] * 2  # written back
    assert stored_digest(blobs, 4) is None  # settings unknown: indexed as stored
    assert sample("recog_worker_reextracted_images_total") == before + 2
    assert sample("recog_worker_skipped_images_total", {"reason": "missing"}) == missing + 1
    [again] = [r.getMessage() for r in caplog.records if "again from their originals" in r.getMessage()]
    assert again.startswith(f"collection {COLLECTION}: extracted the features of 2 image(s) again")
    [unknown] = [r.getMessage() for r in caplog.records if "before extraction settings were recorded" in r.getMessage()]
    assert unknown.startswith(f"collection {COLLECTION}: indexing 1 image(s)")
    [lost] = [r.getMessage() for r in caplog.records if "not indexing" in r.getMessage()]
    assert lost == f"collection {COLLECTION}: not indexing 1 image(s): their features are missing in the blob store"

    # Live: an image stored under other settings while the worker runs is extracted again too.
    upload(db, blobs, 6, extraction=OTHER)
    state.apply(IndexEvent(op="add", collection=COLLECTION, image="img-6", item="item-6"))
    assert found(state, 6) == ["item-6"] and stored_digest(blobs, 6) == extraction_id()
    assert sample("recog_worker_reextracted_images_total") == before + 3


def test_an_event_without_its_item_is_looked_up(db: redis.Redis, blobs: LocalBlobStore, tmp_path: Path) -> None:
    """Events written before features left Redis name no item: the references give it."""
    state = ShardState(db, blobs, 1)
    state.load_shard(0)
    upload(db, blobs, 7)
    state.apply(IndexEvent(op="add", collection=COLLECTION, image="img-7"))
    assert found(state, 7) == ["item-7"]
    blobs.get(f"{prefix(7)}/{ORIGINAL}")  # the original stays beside the features
