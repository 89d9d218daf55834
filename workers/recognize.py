"""The worker's recognition pipeline for one query: bytes in, verified matches and timings out."""

from __future__ import annotations

import time

from workers.decode import decode_gray
from workers.features import extract_query, require_details
from workers.index import CollectionIndex, Match, verify_candidates


def recognize(index: CollectionIndex, data: bytes, max_results: int) -> tuple[list[Match], dict[str, float]]:
    """Decodes, extracts, shortlists and verifies; raises the IMAGE_* errors of `shared.errors`.

    Returns the matches (best first) and milliseconds per stage: decode, features, search
    (word matching and voting), verify (homographies) and total.
    """
    started = time.perf_counter()
    gray = decode_gray(data)
    decoded = time.perf_counter()
    query = extract_query(gray)
    require_details(query)
    extracted = time.perf_counter()
    candidates = index.shortlist(query)
    searched = time.perf_counter()
    matches = verify_candidates(candidates, max_results)
    verified = time.perf_counter()
    timings = {
        "decode": decoded - started,
        "features": extracted - decoded,
        "search": searched - extracted,
        "verify": verified - searched,
        "total": verified - started,
    }
    return matches, {stage: seconds * 1000.0 for stage, seconds in timings.items()}
