"""Geometric verification: do a candidate's descriptor matches agree on one plane-to-plane homography?

Word and Hamming matches alone are noisy (ORB on text, repeated patterns); a planar object seen by
a camera must map to the photo by a homography, which random matches do not follow. MAGSAC++
(`cv2.USAC_MAGSAC`) finds it 20-50x faster than classic RANSAC when few matches are right, then the
homography must also look like a real view of a flat card: a convex, non-mirrored, not vanishing
quadrilateral. The score grows with the inlier count, the one measure that separates true from
chance matches across image sizes, calibrated to a precision (see `score`). Thresholds are fields
of `workers.tuning.RecognitionSettings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from workers.tuning import DEFAULT, RecognitionSettings


@dataclass(frozen=True)
class Verified:
    """A verified candidate: its inlier count, 0..100 score and (4, 2) normalised corners."""

    inliers: int
    score: float
    corners: np.ndarray


def score(inliers: int, *, settings: RecognitionSettings = DEFAULT) -> float:
    """0..100, rising with the inlier count (so results rank by evidence).

    Calibrated (the default): the percentage of first results with that many inliers that were
    right where it was fitted, a logistic curve in ln(inliers) up to `score_ceiling`, so a client's
    `min_score` is the precision it asks for. Uncalibrated (`score_calibrated`
    False): the evidence measure 100 n / (n + score_half_inliers), 20 -> 50, 60 -> 75, from which
    the fit reads n back.
    """
    if not settings.score_calibrated:
        return 100.0 * inliers / (inliers + settings.score_half_inliers)
    return settings.score_ceiling / (
        1.0 + math.exp(-(settings.score_intercept + settings.score_slope * math.log(inliers)))
    )


def _corners(homography: np.ndarray, ref_size: tuple[int, int]) -> np.ndarray:
    """(4, 2) TL, TR, BL, BR of the reference in query pixels, pixel-edge convention.

    Keypoints are pixel-centre coordinates, so the reference's outer corners are at -0.5 and
    size - 0.5, and the projected points move back by +0.5 into the edge convention.
    """
    w, h = ref_size
    edges = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5]], np.float64)
    projected: np.ndarray = cv2.perspectiveTransform(edges[None], homography)[0]
    return projected + 0.5


def plausible(quad: np.ndarray, query_size: tuple[int, int], *, settings: RecognitionSettings = DEFAULT) -> bool:
    """Whether a projected (4, 2) TL, TR, BL, BR quad in query pixels can be a real view of a card."""
    ring = quad[[0, 1, 3, 2]]  # TL, TR, BR, BL: walk around the quadrilateral
    edges = np.roll(ring, -1, axis=0) - ring
    cross = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    if not np.all(cross > 0):  # image y points down: a non-mirrored convex quad turns clockwise
        return False
    area = 0.5 * float(
        np.sum(ring[:, 0] * np.roll(ring, -1, axis=0)[:, 1] - np.roll(ring, -1, axis=0)[:, 0] * ring[:, 1])
    )
    photo = float(query_size[0] * query_size[1])
    if not settings.min_area_fraction * photo <= area <= settings.max_area_fraction * photo:
        return False
    lengths = np.linalg.norm(edges, axis=1)
    ratio = settings.max_side_ratio
    return bool(
        lengths[0] * ratio > lengths[2]
        and lengths[2] * ratio > lengths[0]
        and lengths[1] * ratio > lengths[3]
        and lengths[3] * ratio > lengths[1]
    )


def _distinct(points: np.ndarray, size: tuple[int, int], settings: RecognitionSettings) -> int:
    """How many of the (K, 2) reference points are at distinct places (cells of `distinct_cell` px at
    the analysis size): a reference's tilted views detect one corner several times, and a chance
    homography must not count it once per view."""
    cell = settings.distinct_cell * max(size) / settings.analysis_long_side
    return len(np.unique(np.floor(points / cell).astype(np.int64) @ np.array([1, 1 << 20]), axis=0))


def affine_support(
    ref_points: np.ndarray,
    query_points: np.ndarray,
    query_size: tuple[int, int],
    *,
    settings: RecognitionSettings = DEFAULT,
) -> int:
    """How many of the (M, 2) correspondences one affine map carries: a RANSAC of `screen_iters`
    iterations at `screen_reprojection_px` (px at the analysis size; looser than `reprojection_px`,
    as an affine map only approximates a tilted view). Cheap enough to rank dozens of candidates;
    a true match's pairs agree, chance votes' do not."""
    if len(ref_points) < 3:
        return 0
    threshold = settings.screen_reprojection_px * max(query_size) / settings.analysis_long_side
    _, mask = cv2.estimateAffine2D(
        ref_points,
        query_points,
        method=cv2.RANSAC,
        ransacReprojThreshold=threshold,
        maxIters=settings.screen_iters,
        confidence=0.99,
        refineIters=0,
    )
    return 0 if mask is None else int(mask.sum())


def verify(
    ref_points: np.ndarray,
    query_points: np.ndarray,
    ref_size: tuple[int, int],
    query_size: tuple[int, int],
    min_inliers: int | None = None,
    *,
    settings: RecognitionSettings = DEFAULT,
) -> Verified | None:
    """Verifies (M, 2) float32 reference -> query point correspondences (pixels of each image).

    ref_size, query_size: (width, height) in pixels. Returns None unless a plausible homography
    has at least `min_inliers` inliers (default `settings.min_inliers`) and `min_inlier_ratio` of
    the correspondences.
    """
    min_inliers = settings.min_inliers if min_inliers is None else min_inliers
    if len(ref_points) < min_inliers:
        return None
    threshold = settings.reprojection_px * max(query_size) / settings.analysis_long_side
    homography, mask = cv2.findHomography(
        ref_points,
        query_points,
        cv2.USAC_MAGSAC,
        threshold,
        maxIters=settings.magsac_max_iters,
        confidence=settings.magsac_confidence,
    )
    if homography is None or mask is None:
        return None
    inliers = _distinct(ref_points[mask.ravel() > 0], ref_size, settings)
    if inliers < max(min_inliers, settings.min_inlier_ratio * len(ref_points)):
        return None
    quad = _corners(homography, ref_size)
    if not np.all(np.isfinite(quad)) or not plausible(quad, query_size, settings=settings):
        return None
    corners = quad / np.array(query_size, np.float64)
    return Verified(inliers, score(inliers, settings=settings), corners)
