"""A collection of 200,000 references in 4 parts: what each part's worker holds and spends, and what
the fan-out finds.

The collection is `--parts` parts of `--part-images` references (4 x 50,000), filled in upload order
as `shared.parts` fills them. The dev set's references and distractors are spread evenly over the
positions (uploaded over time among the others); every other position is a filler. Fillers are
derived: the features of `--bases` generated pictures (`bench.scale`'s cache, extracted by the
service's code) are each reused by ~100 references with about one descriptor bit in 16 flipped
(`derived`), so the words, list lengths and voting noise are those of real pictures without
extracting 200,000 of them (~3 h on this machine).

1. Build: one process per part (`--jobs` at a time) indexes the part and saves it as a worker's
   snapshot (`workers.snapshots`), under bench/results/cache/parts/ (~6 GB a part; `--keep` keeps it).
2. Search: for each part in turn, a fresh process pinned to one core, as that part's worker: its RSS
   with nothing loaded (vocabulary and OpenCV warmed up), the snapshot opened (timed), every dev
   query `--passes` times (ORB-1000 timed on each 640x480 query right after, the floor of
   `bench.floor`), its RSS again. Memory per reference = (RSS after - RSS empty) / the part's
   references, file-backed pages of the mapped snapshot included: what the worker keeps resident.
3. Merge: per query, the best-scored first match over the parts (the API's rule) gives recall@1 and
   false positives of the whole collection; the fan-out time of a query is its slowest part's
   worker time (the parts' workers run side by side on their own cores).

    .venv/bin/python -m bench.parts [--parts 4] [--part-images 50000] [--bases 2000] [--passes 3]

Writes bench/results/parts.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.accuracy import (
    DEFAULT_DATASET,
    Outcome,
    outcome_of,
    percentiles,
    pin_one_core,
    recall,
    run_query,
    stage_times,
    summarise,
)
from bench.floor import Orb1000, over_floor
from bench.scale import CACHE, ensure_cache, load_fillers, status_bytes
from shared.parts import part_key
from workers.decode import decode_gray
from workers.features import Features, extract_reference
from workers.index import CollectionIndex
from workers.recognize import recognize
from workers.snapshots import Snapshots

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "parts.json"
SNAPSHOTS = CACHE / "parts"
COLLECTION = "bench"
FLIP_BITS = 4  # a derived filler's descriptor bit flips where 4 random bits are all set: 1 in 16


def derived(base: Features, seed: int) -> Features:
    """`base` with ~1/16 of its descriptor bits flipped (~16 of 256: its words mostly stay, as a
    reprint's would), keypoints kept: another reference as far as the index can tell."""
    rng = np.random.default_rng(seed)
    mask = np.full(base.descriptors.shape, 0xFF, np.uint8)
    for _ in range(FLIP_BITS):
        mask &= rng.integers(0, 256, base.descriptors.shape, np.uint8)
    return Features(base.keypoints, base.descriptors ^ mask, base.width, base.height)


def dev_positions(total: int, count: int) -> dict[int, int]:
    """Position in the collection -> index of the dev entry uploaded there, evenly spread."""
    return {round(i * total / count): i for i in range(count)}


def build_part(part: int, part_images: int, total: int, bases: int, dataset: Path) -> dict[str, Any]:
    """Indexes one part and saves it as a snapshot; returns its build figures."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    entries = manifest["references"] + manifest.get("distractors", [])
    at = dev_positions(total, len(entries))
    base = list(features for _, features in load_fillers(bases))
    index = CollectionIndex()
    started = time.perf_counter()
    first = part * part_images
    for position in tqdm(range(first, first + part_images), desc=f"part {part}", unit="img", position=part):
        if position in at:
            entry = entries[at[position]]
            index.add(entry["id"], extract_reference(decode_gray((dataset / entry["file"]).read_bytes())))
        else:
            index.add(f"F{position:07d}", derived(base[position % bases], position))
    build_s = time.perf_counter() - started
    snapshots = Snapshots(SNAPSHOTS, min_images=0)
    started = time.perf_counter()
    saved = snapshots.save(part_key(COLLECTION, part), index, {i: i for i in index.image_ids()}, "0-0")
    if saved is None:
        raise RuntimeError(f"part {part} could not be saved in {SNAPSHOTS}")
    disk = sum(f.stat().st_size for f in saved.rglob("*") if f.is_file())
    return {
        "part": part,
        "references": len(index),
        "build_s": round(build_s, 1),
        "save_s": round(time.perf_counter() - started, 1),
        "disk_bytes_per_reference": round(disk / len(index)),
    }


def serve_part(part: int, passes: int, dataset: Path) -> dict[str, Any]:
    """One part's worker: memory, open time, latency and each query's first match (first pass)."""
    pin_one_core()
    tqdm.set_lock(threading.RLock())
    manifest = json.loads((dataset / "manifest.json").read_text())
    queries = manifest["queries"]
    recognize(CollectionIndex(), (dataset / queries[0]["file"]).read_bytes(), 10)  # vocabulary, OpenCV
    empty = status_bytes("VmRSS")
    started = time.perf_counter()
    snapshot = Snapshots(SNAPSHOTS, min_images=0).load(part_key(COLLECTION, part))
    open_s = time.perf_counter() - started
    if snapshot is None:
        raise RuntimeError(f"no snapshot of part {part} in {SNAPSHOTS}")
    index = snapshot.index
    orb = Orb1000()
    runs: list[Outcome] = []
    for round_ in range(passes):
        runs += [run_query(index, dataset, q, orb) for q in tqdm(queries, desc=f"part {part} pass {round_ + 1}")]
    stages = stage_times([o for o in runs if o.small])
    floor = orb.summary()
    return {
        "part": part,
        "references": len(index),
        "open_s": round(open_s, 3),
        "searches": len(runs),
        "rss_empty_bytes": empty,
        "memory_bytes_per_reference_rss": round((status_bytes("VmRSS") - empty) / len(index)),
        "time_ms_640x480": stages,
        "orb1000_ms_640x480": floor,
        "worker_over_orb1000": over_floor(stages, floor),
        "first_pass": [(o.id, o.found, o.score, o.small, o.timings.get("total", 0.0)) for o in runs[: len(queries)]],
    }


def merged(dataset: Path, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole collection's figures: per query the best-scored first match over the parts, and the
    slowest part's time."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    answers: dict[str, list[tuple[str | None, float | None, bool, float]]] = {}
    for part in parts:
        for query_id, *answer in part["first_pass"]:
            answers.setdefault(query_id, []).append(tuple(answer))
    outcomes, fan_out = [], []
    for query in manifest["queries"]:
        replies = answers[query["id"]]
        found, score, small, _ = max(replies, key=lambda r: -1.0 if r[1] is None else r[1])
        outcomes.append(outcome_of(query, found, score, small=small))
        if small:
            fan_out.append(max(r[3] for r in replies))
    every = summarise(outcomes)
    return {
        "recall_at_1": every["recall_at_1"],
        "recall_by_tier": every["recall_by_tier"],
        "holdout_recall_at_1": recall([o for o in outcomes if o.expected and o.split == "holdout"]),
        "wrong_top1": every["wrong_top1"],
        "false_positive": every["false_positive"],
        "false_positive_matches": [(o.id, o.found, o.score) for o in outcomes if not o.expected and o.found],
        "fan_out_ms_640x480": percentiles(fan_out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.parts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--part-images", type=int, default=50_000)
    parser.add_argument("--bases", type=int, default=2000, help="generated pictures the fillers derive from")
    parser.add_argument("--passes", type=int, default=3, help="times every dev query is searched per part")
    parser.add_argument("--jobs", type=int, default=2, help="parts built at a time (~8 GB of RAM each at 50,000)")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--keep", action="store_true", help="keep the parts' snapshots afterwards")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    total = args.parts * args.part_images
    ensure_cache(args.bases, args.jobs)
    shutil.rmtree(SNAPSHOTS, ignore_errors=True)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=spawn, max_tasks_per_child=1) as pool:
        jobs = [
            pool.submit(build_part, part, args.part_images, total, args.bases, args.dataset)
            for part in range(args.parts)
        ]
        built = [job.result() for job in jobs]
    served = []
    for part in range(args.parts):  # one at a time: each alone on its core, as a worker on its host
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            served.append(pool.submit(serve_part, part, args.passes, args.dataset).result())
    whole = merged(args.dataset, served)
    if not args.keep:
        shutil.rmtree(SNAPSHOTS, ignore_errors=True)
    report = {
        "dataset": str(args.dataset),
        "references": total,
        "parts": [
            {**b, **{k: v for k, v in s.items() if k != "first_pass"}} for b, s in zip(built, served, strict=True)
        ],
        "collection": whole,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{'part':>4} {'refs':>7} {'build s':>8} {'open s':>7} {'disk KB/ref':>11} {'RSS KB/ref':>10} "
        f"{'p50 ms':>7} {'search':>7} {'ORB-1000':>8} {'total/ORB':>9} {'search/ORB':>10}"
    )
    for row in report["parts"]:
        t, ratio = row["time_ms_640x480"], row["worker_over_orb1000"]
        print(
            f"{row['part']:>4} {row['references']:>7} {row['build_s']:>8.1f} {row['open_s']:>7.2f} "
            f"{row['disk_bytes_per_reference'] / 1024:>11.1f} {row['memory_bytes_per_reference_rss'] / 1024:>10.1f} "
            f"{t['total']['p50']:>7.1f} {t['search']['p50']:>7.1f} {row['orb1000_ms_640x480']['p50']:>8.2f} "
            f"{ratio['total_p50'] or 0:>8.2f}x {ratio['search_p50'] or 0:>9.2f}x"
        )
    print(
        f"whole collection ({total} references): recall@1 {whole['recall_at_1']['rate']:.3f} "
        f"(hold-out {whole['holdout_recall_at_1']['rate']:.3f}), "
        f"false positives {whole['false_positive']['rate']:.3f}, "
        f"fan-out p50 {whole['fan_out_ms_640x480'].get('p50')} ms (slowest part per query)"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
