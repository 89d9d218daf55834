"""Saved collection indexes on the worker's disk: a restarted worker maps a big shard back in
seconds instead of re-adding every reference from the blob store (~2.5 ms each: 244 s at 100,000
in the scale bench).

A snapshot is a `CollectionIndex.save` directory plus `meta.json`: the item of each image and the
shard's event-stream id up to which the index is known to be current. Loading it is only correct
if every event after that id is still in the stream (streams are trimmed to
`shared.catalog.EVENTS_MAXLEN`); the caller checks that and replays them, else it rebuilds the
index from the blob store and saves a fresh snapshot. Replaying an event the snapshot already holds is harmless (add
replaces, remove ignores the absent). A snapshot saved with another vocabulary or other
recognition settings (`workers.tuning`) is not opened: the collection is rebuilt.

Layout: `<root>/<collection>/<name>/` per snapshot and `<root>/<collection>/CURRENT` naming the
newest. Each snapshot is written in a directory of its own and `CURRENT` is replaced atomically,
so worker processes sharing the directory never read a half-written snapshot, and an index still
mapping an older snapshot's files keeps them (unlinked files stay readable while mapped).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from workers import tuning
from workers.index import CollectionIndex, IncompatibleIndex
from workers.tuning import RecognitionSettings

log = logging.getLogger("recog.worker.snapshots")

_CURRENT = "CURRENT"
_META = "meta.json"
_KEEP_SECONDS = 300.0  # older snapshots than the current one are deleted after this long


@dataclass(frozen=True)
class Snapshot:
    index: CollectionIndex
    items: dict[str, str]
    cursor: str  # stream id of the last event the index holds


def stream_id(entry_id: str) -> tuple[int, int]:
    """A Redis stream id ("ms-seq") as a comparable tuple."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


class Snapshots:
    """Snapshots under `root`; collections with fewer than `min_images` images are not saved
    (re-adding them is as fast as opening)."""

    def __init__(self, root: Path, min_images: int) -> None:
        self.root = root
        self.min_images = min_images

    def load(self, collection_id: str, settings: RecognitionSettings = tuning.DEFAULT) -> Snapshot | None:
        """The newest snapshot of a collection, memory-mapped, to search under `settings`; None if
        there is none, it cannot be read, or it was saved under another vocabulary or settings (a
        full rebuild follows)."""
        home = self.root / collection_id
        try:
            name = (home / _CURRENT).read_text().strip()
            meta = json.loads((home / name / _META).read_text())
            index = CollectionIndex.open(home / name, settings)
            return Snapshot(index, {str(k): str(v) for k, v in meta["items"].items()}, str(meta["cursor"]))
        except FileNotFoundError:
            return None
        except IncompatibleIndex as exc:
            log.warning("not opening the saved index of collection %s (rebuilding it): %s", collection_id, exc)
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable index snapshot of collection %s: %s", collection_id, exc)
            return None

    def save(self, collection_id: str, index: CollectionIndex, items: dict[str, str], cursor: str) -> Path | None:
        """Writes a new snapshot, makes it the current one and returns its directory; logs and gives
        up (None) on a disk error (the worker serves from memory either way). None too for a
        collection below `min_images`."""
        if len(index) < self.min_images:
            return None
        home = self.root / collection_id
        name = f"{time.time_ns()}-{os.getpid()}"
        started = time.perf_counter()
        try:
            index.save(home / name)
            (home / name / _META).write_text(json.dumps({"cursor": cursor, "items": items}))
            pointer = home / f"{_CURRENT}.{name}.tmp"
            pointer.write_text(name)
            os.replace(pointer, home / _CURRENT)
        except OSError as exc:
            log.warning("could not save the index snapshot of collection %s: %s", collection_id, exc)
            shutil.rmtree(home / name, ignore_errors=True)
            return None
        log.info(
            "saved the index of collection %s (%d images) in %.2f s",
            collection_id,
            len(index),
            time.perf_counter() - started,
        )
        self._prune(home, name)
        return home / name

    def _prune(self, home: Path, current: str) -> None:
        """Deletes snapshots older than the current one once they are `_KEEP_SECONDS` old: a process
        that read `CURRENT` just before it changed has that long to open what it names."""
        cutoff = time.time() - _KEEP_SECONDS
        for old in home.iterdir():
            if old.is_dir() and old.name != current and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
