"""ORB features of one image: what is indexed for a reference and what a query is matched with.

Every image is first brought to a common analysis size (long side `analysis_long_side` px), so
FAST thresholds, ORB patch sizes and the number of features mean the same for a 400 px postcard and
a 4000 px photo. CLAHE equalises local contrast first, because FAST's threshold is absolute: a dim or
washed-out photo would otherwise lose most of its corners. Keypoints are then scaled back to the
pixel coordinates of the image the caller passed.

Queries (`extract_query`, one view) larger than that keep up to `query_long_side` px, with
proportionally more features: the objects in them may be small.

The values named here are fields of a `workers.tuning.RecognitionSettings`; every extraction
function takes one (`settings`, default `workers.tuning.DEFAULT`).

A reference is indexed with `extract_reference`: its upright features plus those of synthetic
views. Four are tilted by 60 degrees, because ORB is not affine invariant and a steeply tilted card
otherwise shares almost no descriptors with its scan (hard-tier recall 0.54 -> 0.86 on the dev
hold-out half). One is seen from 2.5x farther: a poster covering a tenth of a photo is smaller than
the upright view's coarsest pyramid levels hold many features of (tune-half recall 0.871 -> 0.898,
no false positives).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from shared.errors import CodecError, ImageNoDetails
from workers.tuning import DEFAULT, RecognitionSettings

DESCRIPTOR_BYTES = 32  # ORB: 256 bits

_MAGIC = b"ORB1"
_HEADER = struct.Struct("<4sIII")  # magic, width, height, count
_FIXED = 65535.0  # coordinates are stored as uint16 fractions of the image size


@dataclass(frozen=True, eq=False)
class Features:
    """ORB keypoints and descriptors of one image.

    keypoints: (N, 2) float32 x, y in pixels of the image passed to `extract` (pixel-centre
    coordinates, as OpenCV gives them). descriptors: (N, 32) uint8. width, height: that image's
    size in pixels.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def to_bytes(self) -> bytes:
        """Compact form: 16-byte header, then uint16 fixed-point x, y, then descriptors (36 B/feature)."""
        scale = np.array([self.width, self.height], np.float64)
        fixed = np.clip(np.rint(self.keypoints / scale * _FIXED), 0, _FIXED).astype("<u2")
        header = _HEADER.pack(_MAGIC, self.width, self.height, len(self))
        return header + fixed.tobytes() + np.ascontiguousarray(self.descriptors, np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        """Inverse of `to_bytes` (coordinates within 1/65535 of the size); raises CodecError."""
        if len(data) < _HEADER.size:
            raise CodecError("features: truncated header")
        magic, width, height, count = _HEADER.unpack_from(data)
        if magic != _MAGIC or width == 0 or height == 0:
            raise CodecError("features: not an ORB1 record")
        if len(data) != _HEADER.size + count * (4 + DESCRIPTOR_BYTES):
            raise CodecError("features: length does not match the feature count")
        fixed = np.frombuffer(data, "<u2", count * 2, _HEADER.size).reshape(count, 2)
        keypoints = (fixed.astype(np.float32) / np.float32(_FIXED)) * np.array([width, height], np.float32)
        descriptors = np.frombuffer(data, np.uint8, offset=_HEADER.size + count * 4).reshape(count, DESCRIPTOR_BYTES)
        return cls(keypoints, descriptors.copy(), width, height)


def _orb(max_features: int, settings: RecognitionSettings) -> cv2.ORB:
    return cv2.ORB.create(
        nfeatures=max_features,
        scaleFactor=settings.orb_scale_factor,
        nlevels=settings.orb_levels,
        fastThreshold=settings.fast_threshold,
    )


def _analysed(gray: np.ndarray, long_side: int, settings: RecognitionSettings) -> tuple[np.ndarray, np.ndarray]:
    """The (h', w') uint8 contrast-equalised image with a `long_side` px long side, and the (2,)
    float32 factor from its pixels back to `gray`'s."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"extract wants an (h, w) uint8 image, got {gray.shape} {gray.dtype}")
    height, width = gray.shape
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    analysed = gray if size == (width, height) else cv2.resize(gray, size, interpolation=interpolation)
    back = np.array([width / size[0], height / size[1]], np.float32)
    return cv2.createCLAHE(settings.clahe_clip, settings.clahe_tiles).apply(analysed), back


def _detect(image: np.ndarray, max_features: int, settings: RecognitionSettings) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) float32 pixel-centre keypoints and (N, 32) uint8 ORB descriptors of `image`."""
    keypoints, descriptors = _orb(max_features, settings).detectAndCompute(image, None)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_BYTES), np.uint8)
    return np.asarray(cv2.KeyPoint.convert(keypoints), np.float32), descriptors


def _to_caller(points: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Analysis-size pixel-centre points to the caller's pixels: they scale about the half-pixel
    offset, not about 0."""
    scaled: np.ndarray = (points + 0.5) * back - 0.5
    return scaled.astype(np.float32)


def extract(gray: np.ndarray, long_side: int | None = None, *, settings: RecognitionSettings = DEFAULT) -> Features:
    """ORB features of an (h, w) uint8 grey image analysed at a `long_side` px long side (default:
    the analysis size; at the same feature density as the analysis size), keypoints in `gray`'s
    pixels."""
    long_side = settings.analysis_long_side if long_side is None else long_side
    analysed, back = _analysed(gray, long_side, settings)
    max_features = round(settings.max_features * long_side / settings.analysis_long_side)
    points, descriptors = _detect(analysed, max_features, settings)
    return Features(_to_caller(points, back), descriptors, gray.shape[1], gray.shape[0])


def extract_query(gray: np.ndarray, *, settings: RecognitionSettings = DEFAULT) -> Features:
    """A query's features: a photo larger than the analysis size is analysed at up to
    `query_long_side`, since a poster covering a tenth of a 1280x960 photo is only ~200 px wide
    at 640 (tune-half recall 0.898 -> 0.939, hard 0.762 -> 0.857; 640x480 queries cost the same)."""
    long_side = int(np.clip(max(gray.shape), settings.analysis_long_side, settings.query_long_side))
    return extract(gray, long_side, settings=settings)


def _tilted(analysed: np.ndarray, direction: float, settings: RecognitionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Features of `analysed` as seen tilted by `tilt_degrees` about an axis at `direction` radians:
    an affine squeeze by cos(tilt) across that axis. Keypoints come back in `analysed`'s pixels."""
    height, width = analysed.shape
    c, s = np.cos(direction), np.sin(direction)
    rotate = np.array([[c, -s], [s, c]])
    squeeze = rotate.T @ np.diag([np.cos(np.radians(settings.tilt_degrees)), 1.0]) @ rotate
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64) @ squeeze.T
    shift = -corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) + shift).astype(int)
    forward = np.hstack([squeeze, shift[:, None]])
    view = cv2.warpAffine(
        analysed, forward, (int(size[0]), int(size[1])), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    points, descriptors = _detect(view, settings.view_features, settings)
    inverse = cv2.invertAffineTransform(forward)
    points = points @ inverse[:, :2].T.astype(np.float32) + inverse[:, 2].astype(np.float32)
    inside = np.all((points >= -0.5) & (points <= np.array([width, height], np.float32) - 0.5), axis=1)
    return points[inside], descriptors[inside]


def _far(analysed: np.ndarray, factor: float, settings: RecognitionSettings) -> tuple[np.ndarray, np.ndarray]:
    """Features of `analysed` seen from `factor` times farther (downscaled), in `analysed`'s pixels."""
    height, width = analysed.shape
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    far = cv2.resize(analysed, size, interpolation=cv2.INTER_AREA)
    points, descriptors = _detect(far, settings.far_features, settings)
    return _to_caller(points, np.array([width / size[0], height / size[1]], np.float32)), descriptors


def extract_reference(
    gray: np.ndarray, *, settings: RecognitionSettings = DEFAULT, pause: Callable[[], None] | None = None
) -> Features:
    """What is indexed for a reference image: `extract`'s features plus those of the synthetic
    views of `tilt_directions` and `far_factors` (see module doc). All keypoints in `gray`'s pixels.
    What it gives depends on the settings `workers.tuning.extraction_id` digests. `pause` is called
    between views (~25 ms each): a worker serves the searches that arrived meanwhile."""
    pause = pause or (lambda: None)
    analysed, back = _analysed(gray, settings.analysis_long_side, settings)
    pause()
    makers: list[Callable[[], tuple[np.ndarray, np.ndarray]]] = [
        lambda: _detect(analysed, settings.max_features, settings)
    ]
    makers += [functools.partial(_tilted, analysed, np.radians(d), settings) for d in settings.tilt_directions]
    makers += [functools.partial(_far, analysed, f, settings) for f in settings.far_factors]
    views = []
    for make in makers:
        views.append(make())
        pause()
    points = np.concatenate([v[0] for v in views])
    descriptors = np.concatenate([v[1] for v in views])
    return Features(_to_caller(points, back), descriptors, gray.shape[1], gray.shape[0])


def recognisability(f: Features, *, settings: RecognitionSettings = DEFAULT) -> int:
    """0..5 stars: how likely the image is to be found, from keypoint count and spatial spread.

    Below ~300 ORB keypoints references are rarely found; keypoints bunched in one corner give
    fragile homographies, so the stars drop with the share of empty cells of a grid (4x4 by default).
    """
    stars = sum(len(f) >= n for n in settings.star_counts)
    if stars == 0:
        return 0
    grid = settings.spread_grid
    cells = np.floor(f.keypoints / np.array([f.width, f.height], np.float32) * grid).astype(int)
    cells = np.clip(cells, 0, grid - 1)
    occupied = len(np.unique(cells[:, 1] * grid + cells[:, 0])) / grid**2
    penalty = 2 if occupied < 0.25 else 1 if occupied < 0.5 else 0
    return max(1, stars - penalty)


def require_details(f: Features, *, settings: RecognitionSettings = DEFAULT) -> None:
    """Raises ImageNoDetails when a query has too few features to ever be verified."""
    if len(f) < settings.min_query_features:
        raise ImageNoDetails()
