"""A worker indexes only features extracted under its own settings (real Redis, as the API writes them)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis
from prometheus_client import REGISTRY

from shared import keys
from shared.codec import IndexEvent
from shared.testing.stack import private_db
from tests.test_index import features_of
from tests.test_snapshots import COLLECTION, found, upload
from workers.shard_state import ShardState
from workers.snapshots import Snapshots
from workers.tuning import extraction_id

OTHER = "0123456789ab"  # the extraction digest of other settings


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    with private_db(redis_url, 5) as connection:
        connection.sadd(keys.shard_collections(0), COLLECTION)
        yield connection


def upload_unrecorded(db: redis.Redis, seed: int) -> None:
    """A record as the API wrote them before the extraction digest was recorded."""
    record = {"version": 1, "item": f"item-{seed}", "features": features_of(seed).to_bytes()}
    db.hset(keys.collection_features(COLLECTION), f"img-{seed}", msgpack.packb(record, use_bin_type=True))


def skipped_for_settings() -> float:
    return REGISTRY.get_sample_value("recog_worker_skipped_images_total", {"reason": "settings"}) or 0.0


def test_features_of_other_settings_are_not_indexed_and_logged_once_per_collection(
    db: redis.Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    upload(db, 1)
    upload(db, 2, extraction=OTHER)
    upload(db, 3, extraction=OTHER)
    upload_unrecorded(db, 4)
    before = skipped_for_settings()

    caplog.set_level(logging.INFO, "recog.worker")
    state = ShardState(db, 1, Snapshots(tmp_path, min_images=1))
    assert state.load_shard(0) == 2
    assert found(state, 1) == ["item-1"] and found(state, 4) == ["item-4"]
    assert found(state, 2) == [] and found(state, 3) == []
    assert skipped_for_settings() == before + 2
    [skipped] = [r.getMessage() for r in caplog.records if "not indexing" in r.getMessage()]
    assert skipped.startswith(f"collection {COLLECTION}: not indexing 2 image(s)")
    assert f"found {OTHER} x 2; this worker extracts under {extraction_id()}" in skipped
    [unknown] = [r.getMessage() for r in caplog.records if "before extraction settings were recorded" in r.getMessage()]
    assert unknown.startswith(f"collection {COLLECTION}: indexing 1 image(s)")

    # Live: an image of other settings uploaded while the worker runs is not indexed either.
    upload(db, 5, extraction=OTHER)
    upload(db, 6)
    for seed in (5, 6):
        state.apply(IndexEvent(op="add", collection=COLLECTION, image=f"img-{seed}"))
    assert found(state, 5) == [] and found(state, 6) == ["item-6"]
    assert "image img-5: not indexing 1 image(s) whose features were extracted under other settings" in caplog.text
    assert skipped_for_settings() == before + 3
