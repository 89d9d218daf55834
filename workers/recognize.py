"""The worker's recognition pipeline for one query: bytes in, verified matches and timings out.

A photo smaller than `query_long_side` in which nothing is found gets a second look upsampled to
that size: a poster covering a tenth of a 640x480 photo is ~200 px wide, too small for ORB's finest
scale to match the reference's features (dev set: recall@1 0.945 -> 0.959 hold-out, hard tier
0.861 -> 0.884). A second search is a second chance for a chance match, so what it finds must
have `retry_min_inliers`: the tune half's two false positives of a second look had 13 and 14.
Only misses pay for it (twice the time), so the p50 of a mostly-recognised stream does not move.
The second look also lowers FAST's threshold (`retry_fast_threshold`): a blurred, heavily compressed
video frame has few corners as strong as a reference's (low-resolution tier of `bench.tiers`: 8
more of 143 found with seed 1, 4 more with seed 2; none lost on the dev set).

Queries are decoded, extracted and verified with the index's settings (`CollectionIndex.settings`,
a `workers.tuning.RecognitionSettings`), the ones its references were indexed with.
"""

from __future__ import annotations

import time
from dataclasses import replace

from workers.decode import decode_gray
from workers.features import extract, extract_query, require_details
from workers.index import CollectionIndex, Match, verify_candidates


def recognize(index: CollectionIndex, data: bytes, max_results: int) -> tuple[list[Match], dict[str, float]]:
    """Decodes, extracts, shortlists and verifies; raises the IMAGE_* errors of `shared.errors`.

    Returns the matches (best first) and milliseconds per stage: decode, features, search
    (word matching and voting), verify (homographies) and total.
    """
    settings = index.settings
    clock = _Stages()
    gray = decode_gray(data, settings=settings)
    clock.lap("decode")
    query = extract_query(gray, settings=settings)
    require_details(query, settings=settings)
    clock.lap("features")
    candidates = index.shortlist(query)
    clock.lap("search")
    matches = verify_candidates(candidates, max_results, settings=settings)
    clock.lap("verify")
    if not matches and max(gray.shape) < settings.query_long_side:
        closer = extract(
            gray, settings.query_long_side, settings=replace(settings, fast_threshold=settings.retry_fast_threshold)
        )
        clock.lap("features")
        candidates = index.shortlist(closer)
        clock.lap("search")
        matches = verify_candidates(candidates, max_results, settings.retry_min_inliers, settings=settings)
        clock.lap("verify")
    return matches, clock.milliseconds()


class _Stages:
    """Milliseconds spent per stage (a stage may run twice) and in all."""

    def __init__(self) -> None:
        self._started = self._last = time.perf_counter()
        self._spent = dict.fromkeys(("decode", "features", "search", "verify"), 0.0)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self._spent[stage] += now - self._last
        self._last = now

    def milliseconds(self) -> dict[str, float]:
        return {
            stage: seconds * 1000.0 for stage, seconds in {**self._spent, "total": self._last - self._started}.items()
        }
