"""Messages between the front end and the workers, and their msgpack encoding (never pickle).

Each message is a frozen dataclass with a `version`; `encode_*` / `decode_*` are pure functions
that raise `CodecError` on anything they cannot read, so a bad message fails one job, not a worker.
`MsgpackSerializer` is what RQ uses for its own job envelope, so nothing in Redis is pickled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import msgpack

from shared.errors import CodecError

VERSION = 1
_Message = TypeVar("_Message")
# The import paths RQ records for search and upload jobs; workers run only these, on their lean
# path (workers.worker).
SEARCH_FUNCTION = "workers.jobs.search"
INGEST_FUNCTION = "workers.ingest.ingest"


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
class IngestJob:
    """A reference image to prepare, as queued for any worker: its original is in the blob store
    under `shared.blobs.image_prefix(collection, item, image)`; the worker writes its features and
    thumbnails beside it and pushes an `IngestReply` to `reply_key`. After `deadline` (Unix
    seconds) the front end has given up on it: a worker that pops it later drops it."""

    job_id: str
    collection: str
    item: str
    image: str
    deadline: float
    reply_key: str
    version: int = VERSION


@dataclass(frozen=True, kw_only=True)
class IngestReply:
    """A worker's answer to an `IngestJob`: the 1..5 recognisability rating, or `error`, a contract
    error code (IMAGE_NO_DETAILS, ...) with its `message` for the client."""

    job_id: str
    recognisability: int = 0
    error: str = ""
    message: str = ""
    worker: str = ""
    version: int = VERSION


@dataclass(frozen=True, kw_only=True)
class IndexEvent:
    """A change to a shard's index, published on the shard's event stream.

    op: `add` (the image of `item`, whose features are in the blob store), `remove` (one image),
    `drop` (the whole collection; `image` is empty). `item` is empty in events written before
    features left Redis (the worker then looks the item up).
    """

    op: str
    collection: str
    image: str = ""
    item: str = ""
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


def _decode(data: bytes, kind: str, message: type[_Message]) -> _Message:
    """The `message` dataclass read from msgpack `data` (CodecError if its fields do not fit)."""
    obj = _unpack(data, kind)
    try:
        return message(**obj)
    except TypeError as exc:
        raise CodecError(f"{kind}: {exc}") from exc


def encode_job(job: SearchJob) -> bytes:
    return _pack(job)


def decode_job(data: bytes) -> SearchJob:
    return _decode(data, "search job", SearchJob)


def encode_reply(reply: SearchReply) -> bytes:
    return _pack(reply)


def decode_reply(data: bytes) -> SearchReply:
    obj = _unpack(data, "search reply")
    try:
        hits = [Hit(**h) for h in obj.pop("hits", [])]
        return SearchReply(hits=hits, **obj)
    except TypeError as exc:
        raise CodecError(f"search reply: {exc}") from exc


def encode_ingest(job: IngestJob) -> bytes:
    return _pack(job)


def decode_ingest(data: bytes) -> IngestJob:
    return _decode(data, "ingest job", IngestJob)


def encode_ingest_reply(reply: IngestReply) -> bytes:
    return _pack(reply)


def decode_ingest_reply(data: bytes) -> IngestReply:
    return _decode(data, "ingest reply", IngestReply)


def encode_event(event: IndexEvent) -> dict[str, bytes]:
    """Stream entry fields for XADD."""
    return {"m": _pack(event)}


def decode_event(fields: dict[bytes, bytes]) -> IndexEvent:
    data = fields.get(b"m")
    if data is None:
        raise CodecError("index event: no 'm' field")
    return _decode(data, "index event", IndexEvent)


@dataclass(frozen=True)
class FeatureRecord:
    """What a worker indexes for an image (the blob `shared.blobs.FEATURES`; before the blob store,
    a value of the collection's features hash in Redis): its item, its serialised features, and
    the digest of the settings they were extracted with (`workers.tuning.extraction_id`), so a
    change of settings is detected; `extraction` is None in records written before the digest was
    recorded (settings unknown)."""

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
