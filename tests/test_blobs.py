"""The local blob store: round trips, prefixes, and keys that try to leave its root."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

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


def test_a_put_survives_a_sibling_delete_removing_the_folders_it_just_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two uploads to one collection, one of them refused: deleting its folder removes the parents
    it leaves empty, which can be the folders the other has just made for its file."""
    store = LocalBlobStore(tmp_path / "blobs")
    make_temporary = tempfile.mkstemp
    raced = []

    def after_a_sibling_delete(**kwargs: Any) -> tuple[int, str]:
        if not raced:  # the folders are made and still empty: gone, as their emptied parents would be
            raced.append(kwargs["dir"])
            store.delete_prefix("c/item/image")
            assert not (tmp_path / "blobs" / "c").exists()
        return make_temporary(**kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", after_a_sibling_delete)
    store.put("c/item/image/original.jpg", b"kept")
    assert raced and store.get("c/item/image/original.jpg") == b"kept"


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\..\\b", "a/"])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).put(key, b"x")
