"""The local blob store: round trips, prefixes, and keys that try to leave its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.blobs import LocalBlobStore
from shared.errors import NotFound


def test_put_get_and_delete_prefix(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put("c/i/a/original.jpg", b"one")
    store.put("c/i/b/original.jpg", b"two")
    store.put("c/i/a/original.jpg", b"three")  # replaced atomically
    assert store.get("c/i/a/original.jpg") == b"three"
    assert not [p for p in (tmp_path / "blobs").rglob(".tmp-*")]
    store.delete_prefix("c/i/a")
    with pytest.raises(NotFound):
        store.get("c/i/a/original.jpg")
    assert store.get("c/i/b/original.jpg") == b"two"
    store.delete_prefix("c/nothing-here")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\..\\b", "a/"])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).put(key, b"x")
