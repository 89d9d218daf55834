"""Fits the score calibration (`score_intercept`, `score_slope` of `workers.tuning`): the score is
100 x the estimated share of first results with that many inliers that are right, so `min_score`
reads as a precision.

It measures the dev set and the `bench.tiers` data set with the uncalibrated score (the evidence
measure 100 n / (n + score_half_inliers), from which the inlier count n is read back) and with the
acceptance lowered to 6 inliers on both looks: above the service's own 12 (16 on the second look)
hardly any result is wrong, so the foot of the curve, where chance matches live, must be seen to be
fitted. Every query's first result counts, right or wrong (another reference, or anything for a
negative), and a logistic curve in ln(n) is fitted to rightness by maximum likelihood, then capped
at what the results it saturates on (fitted above 99 %) can vouch for: Laplace's (right + 1) /
(results + 2), so no score claims a certainty the data cannot show. The errors
it rests on are a dozen, so both halves of the queries are used; the curve is monotone, so it
changes no result the service returns, only what `min_score` keeps.

Near-duplicate negatives are left out unless `--with-near-duplicates`: they match with as many
inliers as true photos (a median of ~90), so with them the fitted precision is the same (their
share of the mix) at every inlier count, and the score would say nothing. They are reported per
score band by `bench.tiers` instead.

    .venv/bin/python -m bench.calibrate [--seed 1] [--with-near-duplicates] [--out bench/results/calibration.json]

It prints the three fields to put in `workers/tuning.py` and writes them, with the data's counts per
inlier band and the fitted precision there, to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.accuracy import DEFAULT_DATASET, ROOT, measure
from bench.tiers import CACHE, cached
from workers.tuning import DEFAULT

DEFAULT_OUT = ROOT / "bench" / "results" / "calibration.json"
FOOT = 6  # inliers accepted while measuring: chance matches of the dev negatives reach 7-14
# The screen's gate lowered with the acceptance, so candidates with so few agreeing points reach the verification.
MEASURED = replace(DEFAULT, score_calibrated=False, min_inliers=FOOT, retry_min_inliers=FOOT, screen_min_fit=FOOT)
SATURATED = 0.99  # the curve's value above which results count for the ceiling
BANDS = (6, 8, 10, 12, 14, 16, 20, 30, 50, 100)  # lower edges of the inlier bands reported


def inliers_of(score: float) -> int:
    """The inlier count behind an uncalibrated score: exact up to ~120 inliers, where reports' rounding
    of scores to 0.1 starts to blur it (the fitted curve is flat long before)."""
    half = MEASURED.score_half_inliers
    return round(half * score / (100.0 - score))


def first_results(report: dict[str, Any], skip: set[str]) -> list[tuple[int, bool]]:
    """(inliers, right) of the first result of every query that returned one, but kinds `skip`."""
    return [
        (inliers_of(q["score"]), q["found"] == q["expected"])
        for q in report["queries"]
        if q["found"] is not None and q["kind"] not in skip
    ]


def fit(samples: list[tuple[int, bool]]) -> tuple[float, float]:
    """(intercept, slope) of P(right) = 1 / (1 + exp(-(intercept + slope ln n))), by Newton's method on
    the log-likelihood (a tiny ridge keeps it finite if no wrong result overlaps a right one)."""
    x = np.column_stack([np.ones(len(samples)), np.log([n for n, _ in samples])])
    y = np.array([right for _, right in samples], np.float64)
    w = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, x.T @ (y - p))
        w += step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def curve(n: float, intercept: float, slope: float) -> float:
    """The fitted logistic in ln(n), 0..1."""
    return 1.0 / (1.0 + math.exp(-(intercept + slope * math.log(n))))


def ceiling(samples: list[tuple[int, bool]], intercept: float, slope: float) -> float:
    """Percentage: Laplace's estimate of the precision of the results the curve saturates on."""
    top = [right for n, right in samples if curve(n, intercept, slope) > SATURATED]
    return 100.0 * (sum(top) + 1) / (len(top) + 2)


def bands(samples: list[tuple[int, bool]], intercept: float, slope: float, top: float) -> list[dict[str, Any]]:
    """Per inlier band: results, right ones, and the fitted precision (%) at the band's mean count."""
    rows = []
    for low, high in zip(BANDS, (*BANDS[1:], math.inf), strict=True):
        counts = [(n, right) for n, right in samples if low <= n < high]
        if counts:
            mean = float(np.mean([n for n, _ in counts]))
            fitted = top * curve(mean, intercept, slope)
            rows.append(
                {
                    "inliers": f"{low}-{high - 1}" if high < math.inf else f"{low}+",
                    "n": len(counts),
                    "right": sum(r for _, r in counts),
                    "fitted_precision": round(fitted, 1),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dev", type=Path, default=DEFAULT_DATASET, help="the development set")
    parser.add_argument("--seed", type=int, default=1, help="the tiers' seed (bench.tiers)")
    parser.add_argument("--with-near-duplicates", action="store_true", help="fit on near-duplicates too")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON path of the fit")
    args = parser.parse_args()
    skip = set() if args.with_near_duplicates else {"near-duplicate"}
    samples = []
    for name, dataset in (("dev", args.dev), ("tiers", cached(args.dev, args.seed))):
        samples += first_results(measure(dataset, CACHE / f"calibration-{name}.json", MEASURED), skip)
    intercept, slope = fit(samples)
    top = ceiling(samples, intercept, slope)
    table = bands(samples, intercept, slope, top)
    print(f"\n{len(samples)} first results, {sum(r for _, r in samples)} right:")
    for row in table:
        print(
            f"  {row['inliers']:>7} inliers: {row['right']:4} right of {row['n']:4}, fitted {row['fitted_precision']} %"
        )
    fitted = {"score_intercept": round(intercept, 3), "score_slope": round(slope, 3), "score_ceiling": round(top, 1)}
    print("".join(f"\n{name}: float = {value}" for name, value in fitted.items()))
    meta = {"seed": args.seed, "foot_inliers": FOOT, "skipped_kinds": sorted(skip)}
    args.out.write_text(json.dumps({"meta": meta, "fit": fitted, "bands": table}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
