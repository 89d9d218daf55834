"""The function RQ runs for each reference upload, and the CPU work behind it.

An upload's original is in the blob store when its job is queued (`api.uploads`). A worker checks it
with the same rules as a search query, decodes it, rates it, extracts what the index keeps
(`workers.features.extract_reference`, ~0.2 s an image: the reason this runs on workers and not in
the front end) and makes its thumbnails; features and thumbnails are written beside the original
before the reply, so the `add` event the front end then publishes never precedes its data.

Upload queues are served after search queues (`workers.worker`), so a bulk import never delays the
searches already waiting; and between its stages (each synthetic view, ~25 ms) an upload lets the
worker serve the searches that arrived meanwhile (`IngestContext.pause`), so a search waits for one
stage, not for a whole upload. Indexing throughput grows with the number of workers.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from PIL import Image, ImageOps
from rq.job import Job

from shared.blobs import FEATURES, ORIGINAL, THUMB_SIZES, BlobStore, image_prefix
from shared.codec import IngestJob, IngestReply, decode_ingest, encode_ingest_reply
from shared.config import Settings
from shared.errors import ImageNoDetails, RecogError, ServerError
from shared.imagecheck import inspect
from workers import metrics, tuning
from workers.decode import decode_gray
from workers.features import extract, recognisability
from workers.references import encode_features

log = logging.getLogger("recog.worker.ingest")

THUMB_QUALITY = 85


@dataclass(frozen=True)
class IngestContext:
    """What the upload job needs of its worker; set by `workers.worker` before the first job."""

    name: str
    connection: redis.Redis
    blobs: BlobStore
    settings: Settings
    pause: Callable[[], None] = lambda: None  # serves the searches waiting on this worker


CONTEXT: IngestContext | None = None


@dataclass(frozen=True)
class Prepared:
    """An upload after the CPU work: its feature record's bytes, its 0..5 rating, thumbnail JPEGs
    by blob name."""

    record: bytes
    recognisability: int
    thumbnails: dict[str, bytes]


def thumbnails(data: bytes) -> dict[str, bytes]:
    """JPEG thumbnails of an already-checked image, upright per its EXIF orientation."""
    with Image.open(io.BytesIO(data)) as opened:
        largest = max(THUMB_SIZES.values())
        opened.draft("RGB", (2 * largest, 2 * largest))  # JPEG: decode at a reduced scale, much faster
        upright = _on_white(ImageOps.exif_transpose(opened))
    out = {}
    for name, side in THUMB_SIZES.items():
        buffer = io.BytesIO()
        ImageOps.fit(upright, (side, side), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=THUMB_QUALITY)
        out[name] = buffer.getvalue()
    return out


def _on_white(image: Image.Image) -> Image.Image:
    """The RGB picture, transparent parts white (as `decode_gray(flatten=True)` indexes it)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def prepare(data: bytes, item: str, settings: Settings, pause: Callable[[], None] = lambda: None) -> Prepared:
    """All of an upload's CPU work, calling `pause` between stages; raises the contract's IMAGE_*
    errors."""
    inspect(data, settings, opacity=False)  # decode_gray checks opacity on the pixels it decodes
    recognition = tuning.DEFAULT  # what the workers index and search with
    gray = decode_gray(data, settings=recognition, flatten=True)  # a transparent cut-out is laid on white
    pause()
    # Stars rate the picture as a camera sees it face-on; what is indexed adds tilted views
    # (whose features would inflate the rating), so the upright pass runs twice: ~6 ms an upload.
    rating = recognisability(extract(gray, settings=recognition), settings=recognition)
    if rating == 0:
        raise ImageNoDetails("The image has too few details to be recognised; upload a sharper or more textured image.")
    pause()
    record = encode_features(gray, item, recognition, pause)
    return Prepared(record, rating, thumbnails(data))


def _prepared_reply(context: IngestContext, job: IngestJob) -> IngestReply:
    prefix = image_prefix(job.collection, job.item, job.image)
    try:
        prepared = prepare(context.blobs.get(f"{prefix}/{ORIGINAL}"), job.item, context.settings, context.pause)
    except RecogError as exc:
        return IngestReply(job_id=job.job_id, error=exc.code, message=exc.message, worker=context.name)
    except Exception:
        log.exception("upload %s failed", job.job_id)
        return IngestReply(job_id=job.job_id, error=ServerError.code, worker=context.name)
    for name, blob in {FEATURES: prepared.record, **prepared.thumbnails}.items():
        context.blobs.put(f"{prefix}/{name}", blob)
    return IngestReply(job_id=job.job_id, recognisability=prepared.recognisability, worker=context.name)


def ingest(payload: bytes) -> None:
    """Prepares one uploaded reference image and pushes the outcome to the job's reply key."""
    if CONTEXT is None:
        raise RuntimeError("workers.ingest.CONTEXT is not set: run jobs through `recog worker`")
    started = time.perf_counter()
    job = decode_ingest(payload)
    reply: IngestReply | None = None
    if time.time() < job.deadline:
        reply = _prepared_reply(CONTEXT, job)
        seconds = time.perf_counter() - started
        metrics.INGESTS.labels(reply.error or "indexed").inc()
        metrics.INGEST_SECONDS.observe(seconds)
        log.debug("prepared upload %s in %.0f ms: %s", job.job_id, seconds * 1000, reply.error or "indexed")
    else:
        metrics.INGESTS.labels("dropped").inc()
        log.info("dropped upload %s: its client stopped waiting", job.job_id)
    with CONTEXT.connection.pipeline(transaction=True) as pipe:
        if reply is not None:
            pipe.rpush(job.reply_key, encode_ingest_reply(reply))
            pipe.expire(job.reply_key, CONTEXT.settings.reply_ttl_seconds)
        pipe.delete(Job.key_for(job.job_id))
        pipe.execute()
