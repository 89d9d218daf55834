"""Messages between the front end and the workers, and their msgpack encoding (never pickle).

Each message is a frozen dataclass with a `version`; `encode_*` / `decode_*` are pure functions
that raise `CodecError` on anything they cannot read, so a bad message fails one job, not a worker.
`MsgpackSerializer` is what RQ uses for its own job envelope, so nothing in Redis is pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack

from shared.errors import CodecError

VERSION = 1
# The import path RQ records for search jobs; workers run it on their lean path (workers.worker).
SEARCH_FUNCTION = "workers.jobs.search"


class MsgpackSerializer:
    """RQ serializer (`Queue(serializer=...)`, `Worker(serializer=...)`)."""

    @staticmethod
    def dumps(obj: Any) -> bytes:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed

    @staticmethod
    def loads(data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass(frozen=True, kw_only=True)
class SearchJob:
    """One search, as queued for the shard's workers.

    `deadline` is a Unix time in seconds: a worker that pops the job later drops it unanswered,
    since the front end has already answered 504.
    """

    job_id: str
    collection: str
    image: bytes
    deadline: float
    reply_key: str
    max_results: int = 10
    min_score: float = 0.0
    version: int = VERSION


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One recognised item. `corners`: 4 [x, y] pairs (TL, TR, BL, BR) normalised by the query size."""

    item: str
    image: str
    score: float
    corners: list[list[float]]


@dataclass(frozen=True, kw_only=True)
class SearchReply:
    """A worker's answer. `error` is a contract error code (e.g. IMAGE_NO_DETAILS) or empty.

    `timings` holds worker-side milliseconds by stage (decode, features, search, verify, total).
    """

    job_id: str
    hits: list[Hit] = field(default_factory=list)
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    worker: str = ""
    version: int = VERSION


@dataclass(frozen=True, kw_only=True)
class IndexEvent:
    """A change to a shard's index, published on the shard's event stream.

    op: `add` (image's features are in the collection's features hash), `remove` (one image),
    `drop` (the whole collection; `image` is empty).
    """

    op: str
    collection: str
    image: str = ""
    version: int = VERSION


def _pack(message: Any) -> bytes:
    packed: bytes = msgpack.packb(asdict(message), use_bin_type=True)
    return packed


def _unpack(data: bytes, kind: str) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"{kind}: not msgpack ({exc})") from exc
    if not isinstance(obj, dict):
        raise CodecError(f"{kind}: expected a map, got {type(obj).__name__}")
    if obj.get("version") != VERSION:
        raise CodecError(f"{kind}: unsupported version {obj.get('version')!r}")
    return obj


def encode_job(job: SearchJob) -> bytes:
    return _pack(job)


def decode_job(data: bytes) -> SearchJob:
    obj = _unpack(data, "search job")
    try:
        return SearchJob(**obj)
    except TypeError as exc:
        raise CodecError(f"search job: {exc}") from exc


def encode_reply(reply: SearchReply) -> bytes:
    return _pack(reply)


def decode_reply(data: bytes) -> SearchReply:
    obj = _unpack(data, "search reply")
    try:
        hits = [Hit(**h) for h in obj.pop("hits", [])]
        return SearchReply(hits=hits, **obj)
    except TypeError as exc:
        raise CodecError(f"search reply: {exc}") from exc


def encode_event(event: IndexEvent) -> dict[str, bytes]:
    """Stream entry fields for XADD."""
    return {"m": _pack(event)}


def decode_event(fields: dict[bytes, bytes]) -> IndexEvent:
    data = fields.get(b"m")
    if data is None:
        raise CodecError("index event: no 'm' field")
    obj = _unpack(data, "index event")
    try:
        return IndexEvent(**obj)
    except TypeError as exc:
        raise CodecError(f"index event: {exc}") from exc


@dataclass(frozen=True)
class FeatureRecord:
    """What the features hash stores per image: its item, its serialised features, and the digest
    of the settings they were extracted with (`workers.tuning.extraction_id`); `extraction` is None
    in records written before the digest was recorded (settings unknown)."""

    item: str
    features: bytes
    extraction: str | None


def encode_feature_record(item: str, features: bytes, extraction: str) -> bytes:
    """A `FeatureRecord`'s msgpack map (the digest is an added key: readers that predate it ignore it)."""
    record = {"version": VERSION, "item": item, "features": features, "extraction": extraction}
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def decode_feature_record(data: bytes) -> FeatureRecord:
    obj = _unpack(data, "feature record")
    try:
        extraction = obj.get("extraction")
        if extraction is not None and not isinstance(extraction, str):
            raise CodecError(f"feature record: extraction digest of type {type(extraction).__name__}")
        return FeatureRecord(str(obj["item"]), bytes(obj["features"]), extraction)
    except KeyError as exc:
        raise CodecError(f"feature record: missing {exc}") from exc
