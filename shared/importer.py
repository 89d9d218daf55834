"""`recog import`: a folder of images, or a CSV manifest, into a collection, over the management API.

A folder gives one item per file stem (`poster.jpg` and `poster.png` are two images of `poster`); a
manifest one item per row, with columns `name`, `images` (paths relative to the manifest, `;` between
several), and optionally `url` and `custom`. Items are imported in parallel, each by one thread.

Re-running resumes: an item whose name is in the collection already is not created again, and an
image is not uploaded again when the item has one with the same bytes (SHA-256). The service does
not record that hash, so the originals of the items being resumed are downloaded to compare. An
item this run created is deleted again if none of its images could be uploaded, so a failed import
leaves no empty items behind (they would be resumed without complaint and never match).
"""

from __future__ import annotations

import csv
import hashlib
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from shared.client import ApiError, Client
from shared.failures import CommandFailed
from shared.tables import table

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
LOW_RATING = 2  # of 5: images rated this or lower are listed as hard to recognise
COLUMNS = frozenset({"name", "images", "url", "custom"})


class SourceError(CommandFailed):
    """The folder or manifest cannot be imported as it is; the message says where and why."""


@dataclass(frozen=True)
class Entry:
    """One item to import: its name, its images' files and its optional fields."""

    name: str
    images: tuple[Path, ...]
    url: str = ""
    custom: str = ""


def from_folder(folder: Path) -> list[Entry]:
    """The images directly in `folder` (not in subfolders), one item per file stem, by name."""
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            by_stem.setdefault(path.stem, []).append(path)
    return [Entry(name=stem, images=tuple(paths)) for stem, paths in by_stem.items()]


def from_manifest(manifest: Path) -> list[Entry]:
    """The manifest's rows; a missing column, an unknown one (a typo would lose data), an empty name
    or image list, or a name used twice (resuming goes by name) is a SourceError naming the line."""
    with manifest.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = set(reader.fieldnames or ())
        if not {"name", "images"} <= columns or columns - COLUMNS:
            raise SourceError(
                f"{manifest}: columns must be name, images and optionally url, custom; found {sorted(columns)}"
            )
        entries: dict[str, Entry] = {}
        for row in reader:
            where = f"{manifest}, line {reader.line_num}"
            name = (row["name"] or "").strip()
            images = tuple(manifest.parent / part.strip() for part in (row["images"] or "").split(";") if part.strip())
            if not name or not images:
                raise SourceError(f"{where}: a row needs a name and at least one image")
            if name in entries:
                raise SourceError(f"{where}: the name {name!r} is used twice")
            entries[name] = Entry(name, images, url=row.get("url") or "", custom=row.get("custom") or "")
    return list(entries.values())


def entries_of(source: Path) -> list[Entry]:
    """A folder's or a `.csv` manifest's entries."""
    if source.is_dir():
        return from_folder(source)
    if source.suffix.lower() == ".csv":
        return from_manifest(source)
    raise SourceError(f"{source}: not a folder or a .csv manifest")


@dataclass(frozen=True)
class Failure:
    file: str
    code: str
    message: str


@dataclass(frozen=True)
class LowRating:
    file: str
    rating: int


@dataclass
class Report:
    """What an import did; threads record into it under its lock."""

    uploaded: int = 0
    skipped: int = 0
    items_created: int = 0
    failures: list[Failure] = field(default_factory=list)
    low: list[LowRating] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def render(self) -> str:
        """A summary line, then the failures and the low ratings as tables, if any."""
        lines = [
            f"{self.uploaded} images uploaded ({self.items_created} new items), "
            f"{self.skipped} already there, {len(self.failures)} failed"
        ]
        if self.failures:
            rows = [[f.file, f.code, f.message] for f in sorted(self.failures, key=lambda f: f.file)]
            lines += ["", "Failed:", table(["file", "code", "message"], rows, "<<<")]
        if self.low:
            rows = [[low.file, f"{low.rating}/5"] for low in sorted(self.low, key=lambda low: low.file)]
            lines += ["", "Hard to recognise (upload a sharper, more textured picture):"]
            lines += [table(["file", "recognisability"], rows, "<>")]
        return "\n".join(lines)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Importer:
    """Imports entries into one collection; `progress` advances by one per image, whatever became of it."""

    def __init__(self, client: Client, collection: str, progress: tqdm) -> None:
        self.client, self.collection, self.progress = client, collection, progress
        self.report = Report()
        self.stopping = threading.Event()  # set on Ctrl-C: threads finish the image in hand and stop

    def run(self, entries: Iterable[Entry], jobs: int) -> Report:
        existing: dict[str, dict[str, Any]] = {}
        for item in self.client.objects("item", collection__uuid=self.collection):
            existing.setdefault(item["name"], item)  # names are not unique: the first one is resumed
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="import") as pool:
            futures = [pool.submit(self._entry, entry, existing.get(entry.name)) for entry in entries]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                self.stopping.set()
                pool.shutdown(cancel_futures=True)
                raise
        return self.report

    def _entry(self, entry: Entry, item: dict[str, Any] | None) -> None:
        created = item is None
        try:
            if item is None:
                fields = {"collection": self.collection, "name": entry.name, "url": entry.url, "custom": entry.custom}
                item = self.client.create("item", fields)
            stored = set() if created else self._stored_hashes(item["uuid"])
        except ApiError as exc:
            for path in entry.images:
                self._record(failure=Failure(str(path), exc.code, exc.message))
            return
        uploaded = [self._image(item["uuid"], path, stored) for path in entry.images if not self.stopping.is_set()]
        if created and not any(uploaded):
            self._discard(item["uuid"])
        elif created:
            with self.report.lock:
                self.report.items_created += 1

    def _discard(self, item: str) -> None:
        try:
            self.client.delete("item", item)
        except ApiError as exc:  # its failures are reported already; an empty item is the lesser harm
            print(f"recog: could not delete the empty item {item}: {exc}", file=sys.stderr)

    def _stored_hashes(self, item: str) -> set[str]:
        """The SHA-256 of the item's images, as the service records them (images uploaded before it
        did are downloaded and hashed here)."""
        return {
            image.get("sha256") or sha256(self.client.download(image["file"]))
            for image in self.client.objects("image", item__uuid=item)
        }

    def _image(self, item: str, path: Path, stored: set[str]) -> bool:
        """Uploads one image unless the item has it already; True if it was uploaded."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._record(failure=Failure(str(path), "FILE_UNREADABLE", exc.strerror or str(exc)))
            return False
        digest = sha256(data)
        if digest in stored:
            self._record(skipped=True)
            return False
        try:
            image = self.client.upload_image(item, path, data)
        except ApiError as exc:
            self._record(failure=Failure(str(path), exc.code, exc.message))
            return False
        stored.add(digest)  # the same bytes twice in one item are uploaded once
        rating = int(image.get("recognisability", 5))
        self._record(low=LowRating(str(path), rating) if rating <= LOW_RATING else None)
        return True

    def _record(self, *, failure: Failure | None = None, low: LowRating | None = None, skipped: bool = False) -> None:
        with self.report.lock:
            if failure:
                self.report.failures.append(failure)
            elif skipped:
                self.report.skipped += 1
            else:
                self.report.uploaded += 1
                if low:
                    self.report.low.append(low)
        self.progress.update(1)


def collection_id(client: Client, name: str) -> str:
    """The id of the collection called `name`, created (with its first token) if missing."""
    found = client.collection(name)
    if found is None:
        found = client.create("collection", {"name": name})
        print(f"recog: created the collection {name!r}", file=sys.stderr)
    return str(found["uuid"])


def run(client: Client, source: Path, collection: str, jobs: int, out: TextIO = sys.stdout) -> int:
    """Imports `source` into the collection called `collection`; exit code 1 if anything failed."""
    entries = entries_of(source)
    if not entries:
        print(f"recog: no .jpg, .jpeg or .png files in {source}", file=sys.stderr)
        return 1
    total = sum(len(entry.images) for entry in entries)
    target = collection_id(client, collection)
    # tqdm draws on stderr, and only on a terminal (disable=None): logs and pipes stay clean.
    with tqdm(total=total, unit="image", file=sys.stderr, disable=None) as progress:
        report = Importer(client, target, progress).run(entries, jobs)
    print(report.render(), file=out)
    return 1 if report.failures else 0
