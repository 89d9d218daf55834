"""Recognition accuracy and worker-side latency on a labelled data set, through the service's code path.

References and distractors go through `decode_gray` -> `extract_reference` -> `CollectionIndex.add` (what an
upload and a worker's index load do); every query goes through `recognize` (what a worker does per
search). Pinned to one CPU core, so the times are those of one worker on one core.

    .venv/bin/python -m bench.accuracy [DATASET_DIR] [--out bench/results/accuracy.json] [--set FIELD=VALUE ...]

`RECOG_VOCABULARY=FILE` in the environment measures another vocabulary tree (`workers.vocabulary`)
than the shipped one; the JSON records the file's name.

`--set` measures a variant of the recognition settings (`workers.tuning.RecognitionSettings`, e.g.
`--set view_features=200 --set tilt_directions=0,90`) without editing them: references are
extracted and indexed, and queries searched, with the variant; the JSON records what was changed.

DATASET_DIR defaults to ../shared/data/recognition-dev (relative to the repo root). Input format, so
you can run it on your own labelled photos:

    DATASET_DIR/
      references/    images that queries should match (any name; JPEG or PNG)
      distractors/   optional: also indexed, never the right answer
      queries/       the photos to recognise
      manifest.json  {"references":  [{"id": "R001", "file": "references/R001.jpg"}, ...],
                      "distractors": [{"id": "D001", "file": "distractors/D001.jpg"}, ...],
                      "queries": [{"id": "Q0001", "file": "queries/Q0001.jpg",
                                   "expected": "R001" or null (a negative: nothing should match),
                                   "kind": free text, e.g. "synthetic", "real", "negative-hard",
                                   "tier": free text, e.g. "easy", "medium", "hard", "n/a",
                                   "corners": [[x, y] TL, TR, BL, BR] or null,
                                   "source": optional, groups negatives made from one picture}, ...]}

`corners` are the expected reference's corners in the query (top-left, top-right, bottom-left,
bottom-right of the reference), normalised by the query's width and height, with (0, 0) the outer
corner of the top-left pixel; values may lie outside [0, 1]. "kind", "tier", "corners" and "source"
may be left out. Extra fields are ignored.

Tuning split: queries are split in two halves by a hash of their source picture (the expected
reference for positives, `source` or the query id for negatives), so all photos of one picture
land in the same half. Tune on "tune" only; "holdout" is the headline figure.

Metrics: recall@1 (the expected reference is the first match) overall, per tier and per kind; wrong
top-1 (a positive whose first match is another reference); false positives (a negative with any
match); corner error (mean distance of the 4 corners to the ground truth, as a fraction of the query
diagonal, for correct top-1 with known corners); worker time per query in ms, p50/p95 per stage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.floor import Orb1000, over_floor
from shared.errors import ImageNoDetails
from workers.decode import decode_gray
from workers.features import extract_reference
from workers.index import CollectionIndex
from workers.recognize import recognize
from workers.tuning import DEFAULT, RecognitionSettings
from workers.vocabulary import VOCABULARY_PATH

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "recognition-dev"
DEFAULT_OUT = ROOT / "bench" / "results" / "accuracy.json"
STAGES = ("decode", "features", "search", "verify", "total")
SPLITS = ("holdout", "tune")
_SPLIT_SALT = b"recognition-split-v1"  # changing it re-draws the halves: never do it to chase a number
MAX_RESULTS = 10
MIN_SCORES = (0, 90, 95, 97, 99, 99.5)  # the `min_score` values the report shows figures at (see docs/API.md)


@dataclass(frozen=True)
class Outcome:
    """One query's result. corner_error: fraction of the query diagonal, None unless judged."""

    id: str
    split: str
    kind: str
    tier: str
    expected: str | None
    found: str | None
    score: float | None
    corner_error: float | None
    small: bool  # a 640x480 or 480x640 query: what mobile SDKs send, and what the latency targets mean
    timings: dict[str, float]


def pin_one_core() -> int:
    """Runs this process on one CPU (the last one) and returns it: latency of one worker on one core."""
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def percentiles(values: list[float]) -> dict[str, float]:
    """p50 and p95 (and n) of `values`, rounded for a report."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(float(np.percentile(values, 50)), 2),
        "p95": round(float(np.percentile(values, 95)), 2),
    }


def split_of(query: dict[str, Any]) -> str:
    """'tune' or 'holdout', from a hash of the query's source picture (see module doc)."""
    group = query.get("expected") or query.get("source") or query["id"]
    digest = hashlib.sha1(_SPLIT_SALT + str(group).encode()).digest()
    return SPLITS[digest[0] & 1]


def settings_with(assignments: list[str]) -> RecognitionSettings:
    """`DEFAULT` with `FIELD=VALUE` assignments applied, each value cast to the field's type (a
    tuple field takes comma-separated values, a bool one true or false). Raises ValueError for an
    unknown field or a value of the wrong type: a typo must not measure the defaults under another
    name."""
    known = {f.name for f in fields(RecognitionSettings)}
    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        if name not in known:
            raise ValueError(f"no recognition setting named {name!r}")
        current = getattr(DEFAULT, name)
        if isinstance(current, bool):  # bool("false") is True
            if value not in ("true", "false"):
                raise ValueError(f"{name} is true or false, not {value!r}")
            changes[name] = value == "true"
        elif isinstance(current, tuple):
            changes[name] = tuple(type(current[0])(v) for v in value.split(",")) if value else ()
        else:
            changes[name] = type(current)(value)
    return replace(DEFAULT, **changes)


def build_index(root: Path, manifest: dict[str, Any], settings: RecognitionSettings = DEFAULT) -> CollectionIndex:
    """Indexes every reference and distractor as an upload + worker load would, under `settings`."""
    index = CollectionIndex(settings)
    entries = manifest["references"] + manifest.get("distractors", [])
    for entry in tqdm(entries, desc="index", unit="img"):
        gray = decode_gray((root / entry["file"]).read_bytes(), settings=settings)
        index.add(entry["id"], extract_reference(gray, settings=settings))
    return index


def corner_error(found: np.ndarray, truth: list[list[float]], size: tuple[int, int]) -> float:
    """Mean distance of (4, 2) normalised corners to the truth, as a fraction of the diagonal."""
    scale = np.array(size, np.float64)
    distances = np.linalg.norm((found - np.array(truth, np.float64)) * scale, axis=1)
    return float(distances.mean() / np.hypot(*size))


def run_query(index: CollectionIndex, root: Path, query: dict[str, Any], floor: Orb1000 | None = None) -> Outcome:
    """Recognises one query and judges the first match against the manifest; a 640x480 query is
    then timed on `floor` too."""
    data = (root / query["file"]).read_bytes()
    try:
        matches, timings = recognize(index, data, MAX_RESULTS)
    except ImageNoDetails:
        matches, timings = [], {}
    size = tuple(query.get("size") or decode_gray(data).shape[::-1])
    small = sorted(size) == [480, 640]
    if floor is not None and small:
        floor.time(data)
    top = matches[0] if matches else None
    error = None
    if top is not None and top.image_id == query.get("expected") and query.get("corners"):
        error = corner_error(top.corners, query["corners"], (int(size[0]), int(size[1])))
    return outcome_of(
        query,
        top.image_id if top else None,
        round(top.score, 2) if top else None,  # as the API returns it, so `by_min_score` is what a client sees
        corner_error=error,
        small=small,
        timings={stage: round(ms, 3) for stage, ms in timings.items()},
    )


def outcome_of(
    query: dict[str, Any],
    found: str | None,
    score: float | None,
    *,
    small: bool,
    corner_error: float | None = None,
    timings: dict[str, float] | None = None,
) -> Outcome:
    """The `Outcome` of a manifest query whose first match is `found` (None: nothing)."""
    return Outcome(
        id=query["id"],
        split=split_of(query),
        kind=query.get("kind", "positive" if query.get("expected") else "negative"),
        tier=query.get("tier", "n/a"),
        expected=query.get("expected"),
        found=found,
        score=score,
        corner_error=corner_error,
        small=small,
        timings=timings or {},
    )


def rate(hits: int, n: int) -> dict[str, float]:
    return {"n": n, "rate": round(hits / n, 4) if n else float("nan")}


def grouped(outcomes: list[Outcome], key: Callable[[Outcome], str]) -> dict[str, list[Outcome]]:
    """`outcomes` by `key`, keys in sorted order."""
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(key(outcome), []).append(outcome)
    return dict(sorted(groups.items()))


def recall(positives: list[Outcome]) -> dict[str, float]:
    """Positives whose first match is the expected reference."""
    return rate(sum(o.found == o.expected for o in positives), len(positives))


def wrong_top1(positives: list[Outcome]) -> dict[str, float]:
    """Positives whose first match is another reference."""
    return rate(sum(o.found is not None and o.found != o.expected for o in positives), len(positives))


def false_positives(negatives: list[Outcome]) -> dict[str, float]:
    """Negatives with any match."""
    return rate(sum(o.found is not None for o in negatives), len(negatives))


def corner_errors(positives: list[Outcome]) -> dict[str, Any]:
    """Median and p90 corner error of the positives that have one (correct top-1, known corners)."""
    errors = [o.corner_error for o in positives if o.corner_error is not None]
    return {
        "n": len(errors),
        "median": round(float(np.median(errors)), 5) if errors else None,
        "p90": round(float(np.percentile(errors, 90)), 5) if errors else None,
    }


def by_min_score(outcomes: list[Outcome]) -> dict[str, dict[str, dict[str, float]]]:
    """Recall@1, wrong top-1 and false positives as a client passing each of `MIN_SCORES` sees them
    (results below it dropped), so the score's meaning can be read off per band."""
    figures = {}
    for threshold in MIN_SCORES:
        kept = [o if o.score is not None and o.score >= threshold else replace(o, found=None) for o in outcomes]
        positives = [o for o in kept if o.expected]
        figures[str(threshold)] = {
            "recall_at_1": recall(positives),
            "wrong_top1": wrong_top1(positives),
            "false_positive": false_positives([o for o in kept if not o.expected]),
        }
    return figures


def stage_times(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Per stage, p50/p95 worker time (ms) of the outcomes that have timings."""
    timed = [o for o in outcomes if o.timings]
    return {stage: percentiles([o.timings[stage] for o in timed]) for stage in STAGES}


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    """The report's figures for one set of outcomes (see module doc for definitions)."""
    positives = [o for o in outcomes if o.expected]
    negatives = [o for o in outcomes if not o.expected]
    return {
        "recall_at_1": recall(positives),
        "recall_by_tier": {tier: recall(group) for tier, group in grouped(positives, lambda o: o.tier).items()},
        "recall_by_kind": {kind: recall(group) for kind, group in grouped(positives, lambda o: o.kind).items()},
        "wrong_top1": wrong_top1(positives),
        "false_positive": false_positives(negatives),
        "false_positive_by_kind": {
            kind: false_positives(group) for kind, group in grouped(negatives, lambda o: o.kind).items()
        },
        "corner_error": corner_errors(positives),
        "by_min_score": by_min_score(outcomes),
        "time_ms_all": stage_times(outcomes),
        "time_ms_640x480": stage_times([o for o in outcomes if o.small]),
    }


def _fmt(figure: dict[str, float]) -> str:
    return f"{figure['rate']:7.3f}  (n={figure['n']})" if figure["n"] else "      -"


def print_table(report: dict[str, dict[str, Any]]) -> None:
    """One column per split, holdout first: the headline."""
    names = list(report)
    first = report[names[0]]
    rows: list[tuple[str, str]] = [("recall@1 (positives)", "recall_at_1")]
    rows += [(f"  tier {t}", f"recall_by_tier.{t}") for t in first["recall_by_tier"]]
    rows += [(f"  kind {k}", f"recall_by_kind.{k}") for k in first["recall_by_kind"]]
    rows += [("wrong top-1 (positives)", "wrong_top1"), ("false positives (negatives)", "false_positive")]
    rows += [(f"  {k}", f"false_positive_by_kind.{k}") for k in first["false_positive_by_kind"]]

    def get(summary: dict[str, Any], path: str) -> dict[str, float]:
        node: Any = summary
        for key in path.split("."):
            node = node.get(key, {"n": 0})
        return node  # type: ignore[no-any-return]

    print(f"\n{'':30}" + "".join(f"{n:>22}" for n in names))
    for label, path in rows:
        print(f"{label:30}" + "".join(f"{_fmt(get(report[n], path)):>22}" for n in names))
    for quantile in ("median", "p90"):
        cells = "".join(f"{report[n]['corner_error'][quantile] or float('nan'):>22.4f}" for n in names)
        print(f"{'corner error ' + quantile + ' (/diag)':30}" + cells)
    print(f"\n{'min_score':10}" + "".join(f"{n + ': recall / wrong / FP':>40}" for n in names))
    for threshold in first["by_min_score"]:
        bands = (report[n]["by_min_score"][threshold] for n in names)
        print(
            f"{threshold:>9} "
            + "".join(
                f"{c['recall_at_1']['rate']:>24.3f} / {c['wrong_top1']['rate']:.3f} / {c['false_positive']['rate']:.3f}"
                for c in bands
            )
        )
    for key in ("time_ms_640x480", "time_ms_all"):
        print(f"\n{key} (one core)  " + "  ".join(f"{s:>16}" for s in STAGES))
        for n in names:
            stats = report[n][key]
            print(
                f"  {n:16}"
                + "  ".join(f"{stats[s].get('p50', 0):7.1f}/{stats[s].get('p95', 0):<7.1f}" + " " for s in STAGES)
            )
    print("  (each cell: p50/p95 ms)")


def measure(dataset: Path, out: Path, settings: RecognitionSettings = DEFAULT) -> dict[str, Any]:
    """Indexes `dataset`, recognises its queries under `settings`, prints the table and writes the
    JSON report to `out`; returns the report (other benches build their data sets and call this)."""
    core = pin_one_core()
    manifest = json.loads((dataset / "manifest.json").read_text())
    index = build_index(dataset, manifest, settings)
    orb = Orb1000()
    outcomes = [run_query(index, dataset, q, orb) for q in tqdm(manifest["queries"], desc="query", unit="img")]
    report = {split: summarise([o for o in outcomes if o.split == split]) for split in SPLITS}
    report["all"] = summarise(outcomes)
    print_table(report)
    floor = orb.summary()
    cost = over_floor(report["all"]["time_ms_640x480"], floor)
    print(
        f"\nORB-1000 on the same 640x480 queries, same core: p50 {floor.get('p50')} ms; worker p50 is "
        f"{cost['total_p50']}x that, its search stage {cost['search_p50']}x"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "dataset": str(dataset),
        "indexed": len(index),
        "queries": len(outcomes),
        "cpu_core": core,
        "machine": platform.processor() or platform.machine(),
        "headline": "holdout",
        "vocabulary": VOCABULARY_PATH.name,
        "orb1000_ms_640x480": floor,
        "worker_over_orb1000": cost,
        "settings_changed": {
            f.name: getattr(settings, f.name)
            for f in fields(settings)
            if getattr(settings, f.name) != getattr(DEFAULT, f.name)
        },
    }
    result = {"meta": meta, "summary": report, "queries": [asdict(o) for o in outcomes]}
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")
    return result


def add_settings_option(parser: argparse.ArgumentParser) -> None:
    """`--set FIELD=VALUE` (repeatable), read by `settings_with`."""
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a recognition setting of the variant to measure (repeatable)",
    )


def parsed_settings(parser: argparse.ArgumentParser, assignments: list[str]) -> RecognitionSettings:
    """`settings_with(assignments)`, a bad assignment being a usage error."""
    try:
        return settings_with(assignments)
    except ValueError as error:
        parser.error(str(error))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.accuracy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "dataset", nargs="?", type=Path, default=DEFAULT_DATASET, help="data set folder (see format above)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    add_settings_option(parser)
    args = parser.parse_args()
    measure(args.dataset, args.out, parsed_settings(parser, args.assignments))


if __name__ == "__main__":
    main()
