"""The score: rises with the inlier count, calibrated to a precision by default."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import pytest

from workers.tuning import DEFAULT
from workers.verify import score


def test_the_default_score_rises_strictly_with_the_inliers_so_results_keep_their_order() -> None:
    scores = [score(n) for n in range(DEFAULT.min_inliers, 400)]
    assert all(0 < s < 100 for s in scores)
    assert all(a < b for a, b in pairwise(scores))


def test_the_calibrated_score_is_the_fitted_logistic_curve() -> None:
    settings = replace(DEFAULT, score_intercept=-4.0, score_slope=2.0, score_ceiling=98.0)
    assert score(1, settings=settings) == pytest.approx(98 / (1 + math.exp(4)))
    assert score(1000, settings=settings) == pytest.approx(98.0, abs=0.01)


def test_uncalibrated_the_score_is_the_evidence_measure() -> None:
    settings = replace(DEFAULT, score_calibrated=False)
    assert score(20, settings=settings) == pytest.approx(50.0)
    assert score(60, settings=settings) == pytest.approx(75.0)
