"""bench.calibrate: the inlier count read back from an uncalibrated score, and the fitted curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.calibrate import MEASURED, ceiling, fit, inliers_of
from workers.verify import score


@pytest.mark.parametrize("inliers", [6, 12, 37, 110])
def test_the_inlier_count_is_read_back_from_a_reported_score(inliers: int) -> None:
    assert inliers_of(round(score(inliers, settings=MEASURED), 1)) == inliers


def test_the_fit_recovers_a_logistic_curve_and_caps_it_by_what_the_data_vouches_for() -> None:
    rng = np.random.default_rng(0)
    counts = rng.integers(4, 60, 20000)
    truth = 1 / (1 + np.exp(-(-10.0 + 4.0 * np.log(counts))))
    samples = [(int(n), bool(r)) for n, r in zip(counts, rng.random(len(counts)) < truth, strict=True)]
    intercept, slope = fit(samples)
    assert intercept == pytest.approx(-10.0, abs=0.5) and slope == pytest.approx(4.0, abs=0.2)
    saturated = [right for n, right in samples if 1 / (1 + math.exp(-(intercept + slope * math.log(n)))) > 0.99]
    assert ceiling(samples, intercept, slope) == pytest.approx(100 * (sum(saturated) + 1) / (len(saturated) + 2))
