"""Where reference images' originals and thumbnails are kept.

Keys are relative paths such as `{collection}/{item}/{image}/original.jpg`, so a whole item or
collection goes with one `delete_prefix`. The interface is deliberately three calls so an object
store (S3 and the like) can replace `LocalBlobStore` without touching its callers. Methods are
synchronous: async callers run them with `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from shared.errors import NotFound


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete_prefix(self, prefix: str) -> None: ...


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
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("No such file.") from None

    def delete_prefix(self, prefix: str) -> None:
        """Removes the directory `prefix` and everything under it; a missing one is not an error."""
        shutil.rmtree(self.path(prefix), ignore_errors=True)
