"""What a worker indexes for each reference image, read from the blob store.

A feature record carries the digest of the settings it was extracted with. A record made under other
settings than the worker's is extracted again from the original beside it and written back, so an
index never mixes features of two extractions and nobody has to upload anything again. A record
made before the digest was recorded is indexed as it is: its settings are unknown, and they were
the only ones there were.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import numpy as np

from shared.blobs import FEATURES, ORIGINAL, BlobStore, image_prefix
from shared.codec import FeatureRecord, decode_feature_record, encode_feature_record
from shared.errors import CodecError, NotFound, RecogError
from workers.decode import decode_gray
from workers.features import Features, extract_reference
from workers.tuning import RecognitionSettings, extraction_id

log = logging.getLogger("recog.worker.references")


class Outcome(enum.Enum):
    """How an image's features were found (what a collection's load reports, by count)."""

    STORED = "stored"  # as stored, under the worker's settings
    UNRECORDED = "unrecorded"  # as stored, settings unknown (stored before they were recorded)
    REEXTRACTED = "reextracted"  # made again from the original under the worker's settings
    MISSING = "missing"  # no features (or no original to make them from): not indexed
    UNREADABLE = "unreadable"  # features that cannot be decoded: not indexed


def encode_features(
    gray: np.ndarray, item: str, settings: RecognitionSettings, pause: Callable[[], None] | None = None
) -> bytes:
    """The feature record of a decoded reference image: what `FEATURES` holds (`pause`: see
    `workers.features.extract_reference`)."""
    features = extract_reference(gray, settings=settings, pause=pause)
    return encode_feature_record(item, features.to_bytes(), extraction_id(settings))


def load(
    blobs: BlobStore, collection: str, item: str, image: str, settings: RecognitionSettings
) -> tuple[Features | None, Outcome]:
    """The features to index for an image (None when there are none) and how they were found."""
    prefix = image_prefix(collection, item, image)
    try:
        record = decode_feature_record(blobs.get(f"{prefix}/{FEATURES}"))
    except NotFound:
        return None, Outcome.MISSING
    except CodecError:
        return None, Outcome.UNREADABLE
    outcome = Outcome.STORED if record.extraction == extraction_id(settings) else Outcome.UNRECORDED
    if record.extraction is not None and outcome is Outcome.UNRECORDED:
        found = _reextract(blobs, prefix, item, settings)
        if found is None:
            return None, Outcome.MISSING
        record, outcome = found, Outcome.REEXTRACTED
    try:
        return Features.from_bytes(record.features), outcome
    except CodecError:
        return None, Outcome.UNREADABLE


def _reextract(blobs: BlobStore, prefix: str, item: str, settings: RecognitionSettings) -> FeatureRecord | None:
    """Extracts an image's features again from its original and stores them; None without one."""
    try:
        gray = decode_gray(blobs.get(f"{prefix}/{ORIGINAL}"), settings=settings, flatten=True)  # as uploads are
        raw = encode_features(gray, item, settings)
    except NotFound:
        return None
    except RecogError as exc:  # accepted once, so it decoded then: a damaged file
        log.warning("cannot extract the features of %s again: %s", prefix, exc)
        return None
    blobs.put(f"{prefix}/{FEATURES}", raw)
    return decode_feature_record(raw)
