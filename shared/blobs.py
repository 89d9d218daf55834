"""The blob store: reference images' originals, thumbnails and features, outside Redis.

Keys are relative paths `{collection}/{item}/{image}/{name}` (`image_prefix`, the names below), so
a whole item or collection goes with one `delete_prefix`. The API writes originals; the workers
write features and thumbnails, and read features back to build their indexes. The interface is
four calls (put, get, delete by prefix, list by prefix) so an object store (S3 and the like) can
replace `LocalBlobStore` without touching its callers; every process of a deployment must see the
same store (one shared volume on one host, an object store across hosts). Methods are
synchronous: async callers run them with `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.errors import NotFound

_FOLDER_TRIES = 5  # see LocalBlobStore._aside

ORIGINAL = "original.jpg"  # the uploaded bytes as sent (JPEG or PNG); `api.files` sniffs the type
FEATURES = "features.bin"  # msgpack `shared.codec.FeatureRecord`: what a worker indexes
# Square thumbnails, centre-cropped, by name and side in pixels.
THUMB_SIZES = {"thumb_120.jpg": 120, "thumb_60.jpg": 60}
SERVED = frozenset({ORIGINAL, *THUMB_SIZES})  # the names `api.files` serves (not the features)


def image_prefix(collection: str, item: str = "", image: str = "") -> str:
    """The blob prefix of a collection, an item or an image (`{collection}/{item}/{image}`)."""
    return "/".join(part for part in (collection, item, image) if part)


@dataclass(frozen=True)
class BlobInfo:
    """A listed blob: its key and when it was last written (Unix seconds)."""

    key: str
    modified: float


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def list(self, prefix: str) -> Iterator[BlobInfo]: ...


class LocalBlobStore:
    """Blobs as files under `root`; a reader never sees a half-written file (write, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file of `key`; refuses keys that would leave `root` (`..`, absolute, empty parts)."""
        parts = key.split("/")
        if any(part in ("", ".", "..") or "\\" in part for part in parts):
            raise ValueError(f"bad blob key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        fd, tmp = self._aside(target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _aside(self, folder: Path) -> tuple[int, str]:
        """A new temporary file in `folder`, made with its parents. A `delete_prefix` of a sibling
        removes the parents it leaves empty, which may be this file's, just made: until the file
        is in it, the folder is made again (a few tries; concurrent uploads to one collection)."""
        tries = 1
        while True:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                return tempfile.mkstemp(dir=folder, prefix=".tmp-")
            except FileNotFoundError:
                if tries == _FOLDER_TRIES:
                    raise
                tries += 1

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("No such file.") from None

    def delete_prefix(self, prefix: str) -> None:
        """Removes the directory `prefix` and everything under it, then its parents left empty; a
        missing one is not an error."""
        folder = self.path(prefix)
        shutil.rmtree(folder, ignore_errors=True)
        for parent in folder.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): its other children stay
                break

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob under `prefix` ("" for all), in no particular order; files being written
        (`.tmp-*`) are not blobs yet."""
        top = self.path(prefix) if prefix else self.root
        for folder, _, names in os.walk(top):
            for name in names:
                if name.startswith(".tmp-"):
                    continue
                path = Path(folder, name)
                try:
                    modified = path.stat().st_mtime
                except FileNotFoundError:  # deleted while listed
                    continue
                yield BlobInfo(path.relative_to(self.root).as_posix(), modified)
