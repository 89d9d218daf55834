"""The floor a search's cost is judged against: ORB with 1,000 features on the same query image.

Two machines of the same kind differ 2-3x in speed, so a latency target is a ratio to what the
feature detector alone costs on the same images, in the same process and run: `Orb1000` times
`cv2.ORB.detectAndCompute` (1,000 features) on each query as the worker decodes it (decoding is
not timed) right after the worker's run on it; `over_floor` divides the worker's p50 by the floor's.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from workers.decode import decode_gray

ORB_FEATURES = 1000


class Orb1000:
    """Times ORB-1000 on query images one by one, each right after the worker's own run on it, so
    both see the same machine load (one run each, as the worker's; decoding untimed)."""

    def __init__(self) -> None:
        self._orb = cv2.ORB.create(nfeatures=ORB_FEATURES)
        self._ms: list[float] = []

    def time(self, data: bytes) -> None:
        gray = decode_gray(data)
        started = time.perf_counter()
        self._orb.detectAndCompute(gray, None)
        self._ms.append((time.perf_counter() - started) * 1000)

    def summary(self) -> dict[str, float]:
        """p50, p95 (ms) and n of the images timed."""
        if not self._ms:
            return {"n": 0}
        return {
            "n": len(self._ms),
            "p50": round(float(np.percentile(self._ms, 50)), 2),
            "p95": round(float(np.percentile(self._ms, 95)), 2),
        }


def over_floor(stage_ms: dict[str, dict[str, Any]], floor: dict[str, float]) -> dict[str, float | None]:
    """The worker's p50 total and search-stage times as multiples of the ORB-1000 p50."""
    base = floor.get("p50")

    def ratio(stage: str) -> float | None:
        p50 = stage_ms.get(stage, {}).get("p50")
        return round(p50 / base, 2) if p50 is not None and base else None

    return {"total_p50": ratio("total"), "search_p50": ratio("search")}
