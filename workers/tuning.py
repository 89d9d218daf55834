"""Every tuning value of recognition, in one frozen dataclass: `RecognitionSettings`, `DEFAULT`.

The recognition modules read their values from a `RecognitionSettings` (the pure functions take
one as an argument, defaulting to `DEFAULT`; a `CollectionIndex` holds the one it was built with).
Values that are formats rather than tuning (ORB's descriptor size, the stored coordinate scale,
file names) stay in the modules that define those formats.

Some fields change what is stored, so data made under other values must not be mixed in:

- `extraction` fields change the features extracted for a reference. `extraction_id` is a short
  digest of them, recorded with each image's stored features (`shared.codec`): a worker does not
  index features recorded under another digest (`workers.shard_state`).
- `index` fields change what a saved index holds (word assignment, posting layout). A saved index
  records their digest, `index_id`, and the extraction id, and is not opened under others
  (`workers.index`).

The other fields act at search time only: changing them needs no re-extraction or rebuild.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from functools import cache
from types import MappingProxyType
from typing import Any

# Field metadata: which digest a field is part of (see module doc).
_EXTRACTION = MappingProxyType({"affects": "extraction"})
_INDEX = MappingProxyType({"affects": "index"})
_DIGEST_HEX = 12  # hex digits of a settings digest: 48 bits, plenty to tell a handful of versions apart


@dataclass(frozen=True)
class RecognitionSettings:
    """Recognition tuning values; `DEFAULT` is what the service runs with."""

    # --- Feature extraction (`workers.features`, `workers.decode`): part of `extraction_id` ---
    # px; every image is analysed at this long side. Queries from phone SDKs are 640x480, so most
    # need no resize at all.
    analysis_long_side: int = field(default=640, metadata=_EXTRACTION)
    # px; larger queries keep this much detail, for objects small in the frame. Also the size
    # decoding keeps at least (reduced JPEG reads), so it changes references' pixels too.
    query_long_side: int = field(default=960, metadata=_EXTRACTION)
    # ORB features at the analysis size; a query analysed larger gets proportionally more.
    max_features: int = field(default=1000, metadata=_EXTRACTION)
    # ORB pyramid: scale step and levels, and FAST's (absolute) corner threshold.
    orb_scale_factor: float = field(default=1.2, metadata=_EXTRACTION)
    orb_levels: int = field(default=8, metadata=_EXTRACTION)
    fast_threshold: int = field(default=20, metadata=_EXTRACTION)
    # CLAHE before detection: FAST's threshold is absolute, so a dim or washed-out photo would
    # otherwise lose most of its corners. Clip limit and tile grid (columns, rows).
    clahe_clip: float = field(default=2.0, metadata=_EXTRACTION)
    clahe_tiles: tuple[int, int] = field(default=(8, 8), metadata=_EXTRACTION)
    # degrees; synthetic reference views: a 2x squeeze, the middle of the hard 50-65 degree range.
    tilt_degrees: float = field(default=60.0, metadata=_EXTRACTION)
    # degrees of the tilt axis of each tilted view; ORB handles the in-plane roll.
    tilt_directions: tuple[float, ...] = field(default=(0.0, 45.0, 90.0, 135.0), metadata=_EXTRACTION)
    # ORB features per tilted view: they overlap the upright view's features in part.
    view_features: int = field(default=400, metadata=_EXTRACTION)
    # Views from this many times farther: a small object in the photo matches them, not the upright view.
    far_factors: tuple[float, ...] = field(default=(2.5,), metadata=_EXTRACTION)
    # ORB features per far view.
    far_features: int = field(default=300, metadata=_EXTRACTION)

    # --- Index layout (`workers.index`, `workers.vocabulary`): part of `index_id` ---
    # Bits of each descriptor kept in the inverted file. 128 saves 16 of 44 bytes a posting and half the
    # scan time (faiss on 10 M random postings: 5.8 vs 11.5 ms), for 1.4 points of dev hold-out recall.
    code_bits: int = field(default=256, metadata=_INDEX)
    # Posting ids pack (slot, keypoint) with this many keypoint bits: at most 4096 keypoints per reference.
    keypoint_bits: int = field(default=12, metadata=_INDEX)
    # Vocabulary groups whose words are compared with a descriptor (word assignment is approximate).
    coarse_probes: int = field(default=4, metadata=_INDEX)

    # --- Search (`workers.index`) ---
    # Hamming distance per 256 code bits above which ORB descriptor pairs are mostly unrelated
    # (see `max_hamming`).
    max_hamming_256: int = 64
    # Reference descriptors kept per query descriptor.
    neighbours: int = 8
    # Words probed per query descriptor: recovers matches split by a word boundary.
    nprobe: int = 2
    # References verified per search.
    max_candidates: int = 8
    # Best-voted references screened by a quick affine fit (`workers.index._screen`) for the
    # `max_candidates` verified; 0: the best-voted are verified. Votes rank a true match with few
    # agreeing points below references that only collect chance votes: screening 48 found 2 more of
    # the dev hold-out half's 146 positives (hard tier 0.884 -> 0.907) and 16 more of 143
    # low-resolution frames, no false positive.
    screen_candidates: int = 48
    # RANSAC iterations of the affine fit, and its threshold (px at the analysis size; looser than
    # `reprojection_px`, as an affine map only approximates a tilted view).
    screen_iters: int = 100
    screen_reprojection_px: float = 10.0
    # Pairs a candidate's affine fit needs to be verified at all: a homography with `min_inliers`
    # distinct inliers fits this many of them, and a failing homography costs ~1 ms (half the
    # verification time went to candidates below 8).
    screen_min_fit: int = 8
    # Share of dead postings at which removed references' postings are dropped from the inverted file.
    compact_fraction: float = 0.25

    # --- Query (`workers.features`, `workers.recognize`) ---
    # Fewer keypoints cannot give a homography with enough inliers to accept.
    min_query_features: int = 40
    # Inliers a second, upsampled look must have: the tune half's two false positives of a second
    # look had 13 and 14.
    retry_min_inliers: int = 16
    # FAST's threshold in the second look: a blurred, compressed or dim photo in which nothing was
    # found has few corners above the references' `fast_threshold` (low-resolution tier of
    # `bench.tiers`, recall@1 0.573 -> 0.622 with seed 1, 0.608 -> 0.636 with seed 2; 5 and 14 gave
    # less; dev set and near-duplicates unchanged).
    retry_fast_threshold: int = 10

    # --- Geometric verification (`workers.verify`) ---
    # Dev-set negatives reach 7 inliers at most; true matches often have 10-20.
    min_inliers: int = 12
    # Chance inliers grow with the tentative matches (a fixed share of random pairs fits some homography
    # within the threshold), so a candidate with many matches also needs a minimum inlier share: an
    # unrelated photo gave 15 of 113, hard true views 14 of 82 and more.
    min_inlier_ratio: float = 0.15
    # px at the analysis size: inliers closer than this on the reference count once.
    distinct_cell: float = 3.0
    # MAGSAC threshold, in pixels of the analysed (`analysis_long_side`) query.
    reprojection_px: float = 5.0
    # MAGSAC's iteration cap and confidence.
    magsac_max_iters: int = 2000
    magsac_confidence: float = 0.999
    # The projected reference must cover at least 0.2 % of the photo ...
    min_area_fraction: float = 0.002
    # ... and not more than 40x it (a close-up of a part is fine).
    max_area_fraction: float = 40.0
    # Opposite sides shorter than 1/12 of each other mean a degenerate view.
    max_side_ratio: float = 12.0
    # Inliers that give an uncalibrated score of 50 (see `workers.verify.score`).
    score_half_inliers: float = 20.0
    # Score calibration (`workers.verify.score`, fitted by `python -m bench.calibrate`): the score is
    # score_ceiling / (1 + exp(-(score_intercept + score_slope * ln inliers))), the percentage of first
    # results with that many inliers that were right on the dev set and its low-resolution tier
    # (near-duplicates are not in it: they score like true matches, see the README's known limits).
    # The last fit (bench/results/calibration.json: -20.498, 9.348) is not applied: it moved with the
    # dozen results below 12 inliers it rests on (6-7 inliers: 0 of 10 right, 1 of 14 before), and
    # with its slope the score stops rising in float64 at 296 inliers, so strong matches would tie.
    score_intercept: float = -16.664
    score_slope: float = 7.598
    # %; the precision of the strongest matches, as far as the results the curve saturates on can vouch
    # for (Laplace: (right + 1) / (results + 2)): never a certainty.
    score_ceiling: float = 99.7
    # False: the uncalibrated evidence measure 100 n / (n + score_half_inliers), which the fit reads.
    score_calibrated: bool = True

    # --- Recognisability rating of an upload (`workers.features.recognisability`) ---
    # Keypoints needed for 1..5 stars.
    star_counts: tuple[int, ...] = (50, 150, 300, 500, 800)
    # The rating looks at the keypoints' spread over a grid of this many cells a side.
    spread_grid: int = 4

    def __post_init__(self) -> None:
        """A calibrated score must rise with the inliers: a higher `min_score` must never keep more."""
        if self.score_slope <= 0 or not 0 < self.score_ceiling <= 100:
            raise ValueError(f"score calibration must rise to at most 100: {self.score_slope=}, {self.score_ceiling=}")

    @property
    def max_hamming(self) -> int:
        """Hamming distance above which a descriptor pair does not vote, for `code_bits`-bit codes."""
        return self.max_hamming_256 * self.code_bits // 256


DEFAULT = RecognitionSettings()


def _plain(value: Any) -> Any:
    """A field's value for the canonical encoding: tuples as lists, every number as a float (so 60
    and 60.0, the same setting, encode alike)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"no canonical encoding for a setting of type {type(value).__name__}")


def _digest(settings: RecognitionSettings, affects: str) -> str:
    """Short hex SHA-256 of the canonical JSON of the fields tagged `affects`: sorted names, numbers
    as floats in Python's shortest round-trip form. Field order does not matter; a renamed field or
    a changed value gives another digest."""
    values = {
        f.name: _plain(getattr(settings, f.name)) for f in fields(settings) if f.metadata.get("affects") == affects
    }
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f"{affects}:{canonical}".encode()).hexdigest()[:_DIGEST_HEX]


@cache
def extraction_id(settings: RecognitionSettings = DEFAULT) -> str:
    """Digest of the settings a reference's extracted features depend on (stored with them)."""
    return _digest(settings, "extraction")


@cache
def index_id(settings: RecognitionSettings = DEFAULT) -> str:
    """Digest of the settings that shape a saved index beyond its features (recorded in it)."""
    return _digest(settings, "index")
