"""Index build time, memory per reference, worker latency and recall as the collection grows.

For each size N (default 1k, 10k, 100k references) one fresh process, pinned to one CPU core, indexes
the dev set's references and distractors plus generated filler pictures up to N
(`shared.testing.imagegen.textured`, each seed a distinct poster, JPEG-encoded, decoded and extracted by the
service's own code), then runs every dev query through `recognize`.

    .venv/bin/python -m bench.scale [--sizes 1000,10000,100000] [--dataset DIR] [--jobs 2] [--set FIELD=VALUE ...]

`--set` measures a variant of the search-time settings (`workers.tuning`, as `bench.accuracy`'s);
the fillers are cached as the default extraction and index layout make them.

- Filler features (`extract_reference`, as an upload makes them) are extracted once and cached in
  bench/results/cache/ (chunks of 1,000 pictures, ~100 MB each; the key hashes two probe fillers'
  features, so a change of extraction re-extracts and stale chunks are deleted). Making the cache
  takes ~60 ms per picture per core: ~5 min for 10k and ~50 min for 100k with --jobs 2 (10 GB).
  Only this preparation uses several cores; everything measured runs on one.
- Memory is the growth of the process's anonymous resident memory (RssAnon in /proc/self/status,
  i.e. the RSS delta without file-backed pages) over the build, divided by N. It includes the faiss
  inverted lists, the keypoints and Python objects, and allocator slack.
- Latency is worker-side (`recognize`'s timings: decode, features, search, verify, total), p50/p95
  in ms over the 640x480 / 480x640 queries, which is what mobile SDKs send.
- Recall@1 and false positives are over all dev queries (the "holdout" half is in the JSON too).
- Persistence: the built index is saved as a worker's snapshot (`workers.snapshots`, timed),
  dropped from memory, opened again memory-mapped (timed: what a restarted worker does before it
  serves the shard) and queried again; the files are deleted afterwards.

Writes bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import shutil
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench.accuracy import (
    DEFAULT_DATASET,
    add_settings_option,
    build_index,
    parsed_settings,
    pin_one_core,
    run_query,
    summarise,
)
from bench.floor import Orb1000, over_floor
from shared.testing import imagegen
from workers.decode import decode_gray
from workers.features import Features, extract_reference
from workers.index import CollectionIndex
from workers.memory import release_freed_memory
from workers.snapshots import Snapshots
from workers.tuning import DEFAULT, RecognitionSettings

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / "results" / "cache"
OUT = ROOT / "bench" / "results" / "scale.json"
CHUNK = 1000  # filler pictures per cache file
FIRST_SEED = 1_000_000  # far from the seeds the tests use


@functools.cache
def cache_key() -> str:
    """A hash of two probe fillers' features: changes whenever what a filler extracts to does."""
    digest = hashlib.sha1()
    for seed in (FIRST_SEED, FIRST_SEED + 1):
        digest.update(filler(seed).to_bytes())
    return digest.hexdigest()[:12]


def filler(seed: int) -> Features:
    """Features of one generated picture; half landscape 640x480, half portrait."""
    w, h = (640, 480) if seed % 2 else (480, 640)
    return extract_reference(decode_gray(imagegen.encode_jpeg(imagegen.textured(seed, w, h), 90)))


def _chunk_path(chunk: int) -> Path:
    return CACHE / f"filler-{cache_key()}-{chunk:04d}.npz"


def make_chunk(chunk: int) -> None:
    """Extracts and caches `CHUNK` fillers: concatenated keypoints/descriptors, per-picture counts."""
    features = [filler(FIRST_SEED + chunk * CHUNK + i) for i in range(CHUNK)]
    tmp = _chunk_path(chunk).with_suffix(".tmp.npz")
    np.savez(
        tmp,
        keypoints=np.concatenate([f.keypoints for f in features]),
        descriptors=np.concatenate([f.descriptors for f in features]),
        counts=np.array([len(f) for f in features], np.int64),
        sizes=np.array([(f.width, f.height) for f in features], np.int64),
    )
    tmp.rename(_chunk_path(chunk))  # atomic: an interrupted run never leaves a half chunk


def ensure_cache(count: int, jobs: int) -> None:
    """Makes the missing chunks for `count` fillers, on `jobs` processes."""
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    for stale in CACHE.glob("filler-*.npz"):
        if not stale.name.startswith(f"filler-{cache_key()}-"):
            stale.unlink()
    missing = [c for c in range(-(-count // CHUNK)) if not _chunk_path(c).exists()]
    if not missing:
        return
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        list(tqdm(pool.imap_unordered(make_chunk, missing), total=len(missing), desc="fillers", unit="chunk"))


def load_fillers(count: int) -> Any:
    """Yields (image_id, Features) for the first `count` cached fillers, one chunk in memory at a time."""
    for chunk in range(-(-count // CHUNK)):
        with np.load(_chunk_path(chunk)) as data:
            counts, sizes = data["counts"], data["sizes"]
            keypoints, descriptors = data["keypoints"], data["descriptors"]
        starts = np.concatenate([[0], np.cumsum(counts)])
        for i in range(min(CHUNK, count - chunk * CHUNK)):
            rows = slice(starts[i], starts[i + 1])
            yield (
                f"F{chunk * CHUNK + i:06d}",
                Features(keypoints[rows], descriptors[rows], int(sizes[i, 0]), int(sizes[i, 1])),
            )


def status_bytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (`RssAnon`, `VmRSS`...), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_anon() -> int:
    """Anonymous resident memory of this process, bytes."""
    return status_bytes("RssAnon")


def measure(size: int, dataset: Path, settings: RecognitionSettings = DEFAULT) -> dict[str, Any]:
    """One size, in a fresh process: build, memory, then every dev query, under `settings`."""
    pin_one_core()
    tqdm.set_lock(threading.RLock())  # tqdm's default multiprocessing lock leaks a semaphore here
    manifest = json.loads((dataset / "manifest.json").read_text())
    CollectionIndex().add(
        "warm-up", filler(FIRST_SEED)
    )  # the shared vocabulary and OpenCV buffers are not per reference
    before = rss_anon()
    started = time.perf_counter()
    index = build_index(dataset, manifest, settings)
    for image_id, features in tqdm(
        load_fillers(size - len(index)), total=size - len(index), desc=f"index {size}", unit="img"
    ):
        index.add(image_id, features)
    build_s = time.perf_counter() - started
    per_reference = (rss_anon() - before) / len(index)
    orb = Orb1000()  # same process, same core, same run
    queries = tqdm(manifest["queries"], desc=f"query {size}", unit="img")
    outcomes = [run_query(index, dataset, q, orb) for q in queries]
    every, holdout = summarise(outcomes), summarise([o for o in outcomes if o.split == "holdout"])
    floor = orb.summary()
    references = len(index)
    snapshots = Snapshots(CACHE / f"snapshots-{size}", min_images=0)
    shutil.rmtree(snapshots.root, ignore_errors=True)
    started = time.perf_counter()
    snapshots.save("scale", index, {image_id: image_id for image_id in index.image_ids()}, "0-0")
    save_s = time.perf_counter() - started
    del index  # what a restarted worker has: nothing in memory, the snapshot on disk
    release_freed_memory()
    persisted = {"save_s": round(save_s, 2), **reopen(snapshots, dataset, manifest, settings)}
    return {
        "references": references,
        "build_s": round(build_s, 1),
        "build_ms_per_reference_incl_extraction_of_dev_images": round(build_s * 1000 / references, 3),
        "memory_bytes_per_reference_rss_anon": round(per_reference),
        "recall_at_1": every["recall_at_1"],
        "recall_by_tier": every["recall_by_tier"],
        "wrong_top1": every["wrong_top1"],
        "false_positive": every["false_positive"],
        "holdout_recall_at_1": holdout["recall_at_1"],
        "time_ms_640x480": every["time_ms_640x480"],
        "orb1000_ms_640x480": floor,
        "worker_over_orb1000": over_floor(every["time_ms_640x480"], floor),
        "persisted": persisted,
    }


def reopen(
    snapshots: Snapshots, dataset: Path, manifest: dict[str, Any], settings: RecognitionSettings = DEFAULT
) -> dict[str, Any]:
    """Opens the saved snapshot (index memory-mapped, items read: what a restarting worker does)
    and reruns the queries on it; deletes the files afterwards. They were written just before, so
    the page cache is warm: `open_s` is a warm start; a cold one also reads touched pages from disk."""
    disk = sum(f.stat().st_size for f in snapshots.root.rglob("*") if f.is_file())
    before = rss_anon()
    started = time.perf_counter()
    snapshot = snapshots.load("scale", settings)
    open_s = time.perf_counter() - started
    if snapshot is None:
        raise RuntimeError(f"the snapshot just saved in {snapshots.root} cannot be opened")
    opened = snapshot.index
    outcomes = [
        run_query(opened, dataset, q) for q in tqdm(manifest["queries"], desc=f"opened {len(opened)}", unit="img")
    ]
    every = summarise(outcomes)
    anon = (rss_anon() - before) / len(opened)
    shutil.rmtree(snapshots.root, ignore_errors=True)
    return {
        "open_s": round(open_s, 3),
        "disk_bytes_per_reference": round(disk / len(opened)),
        "memory_bytes_per_reference_rss_anon_when_opened": round(anon),
        "recall_at_1": every["recall_at_1"],
        "time_ms_640x480_total": every["time_ms_640x480"]["total"],
        "time_ms_640x480_search": every["time_ms_640x480"]["search"],
    }


def print_row(row: dict[str, Any]) -> None:
    t = row["time_ms_640x480"]
    tiers = " ".join(f"{k[0]}={v['rate']:.3f}" for k, v in row["recall_by_tier"].items())
    print(
        f"{row['references']:>8} {row['build_s']:>8.1f} {row['memory_bytes_per_reference_rss_anon'] / 1024:>9.1f} "
        f"{t['total']['p50']:>7.1f} {t['total']['p95']:>7.1f} {t['search']['p50']:>7.1f} {t['verify']['p50']:>7.1f} "
        f"{row['recall_at_1']['rate']:>7.3f} ({tiers}) {row['wrong_top1']['rate']:>6.3f} "
        f"{row['false_positive']['rate']:>6.3f} {row['orb1000_ms_640x480'].get('p50', 0):>7.1f} "
        f"{row['worker_over_orb1000']['total_p50'] or 0:>6.2f}x {row['worker_over_orb1000']['search_p50'] or 0:>6.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated reference counts")
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--jobs", type=int, default=2, help="processes for making the filler cache")
    parser.add_argument("--out", type=Path, default=OUT)
    add_settings_option(parser)
    args = parser.parse_args()
    settings = parsed_settings(parser, args.assignments)
    stored = [f.name for f in fields(settings) if f.metadata and getattr(settings, f.name) != getattr(DEFAULT, f.name)]
    if stored:  # extraction and index-layout fields
        parser.error(f"fillers are cached as the defaults extract and index them: {', '.join(stored)} cannot change")
    sizes = [int(s) for s in args.sizes.split(",")]
    ensure_cache(max(sizes), args.jobs)
    rows = []
    for size in sizes:
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: RSS starts clean
            rows.append(pool.apply(measure, (size, args.dataset, settings)))
    print(
        f"\n{'refs':>8} {'build s':>8} {'KB/ref':>9} {'p50 ms':>7} {'p95 ms':>7} {'search':>7} {'verify':>7} "
        f"{'recall@1':>7} {'wrong':>6} {'FP':>6} {'ORB1000':>7} {'p50/ORB':>7} {'search/ORB':>10}"
    )
    for row in rows:
        print_row(row)
    print("(one core; latency on 640x480 queries; KB/ref = RssAnon growth / refs; recall over all dev positives)")
    print(
        f"\n{'refs':>8} {'save s':>7} {'open s':>7} {'disk KB/ref':>11} {'anon KB/ref':>11} {'p50 ms':>7} "
        f"{'search':>7} {'recall@1':>8}"
    )
    for row in rows:
        p = row["persisted"]
        print(
            f"{row['references']:>8} {p['save_s']:>7.2f} {p['open_s']:>7.3f} "
            f"{p['disk_bytes_per_reference'] / 1024:>11.1f} "
            f"{p['memory_bytes_per_reference_rss_anon_when_opened'] / 1024:>11.1f} "
            f"{p['time_ms_640x480_total']['p50']:>7.1f} "
            f"{p['time_ms_640x480_search']['p50']:>7.1f} {p['recall_at_1']['rate']:>8.3f}"
        )
    print("(the saved index opened memory-mapped, warm page cache; anon KB/ref excludes the mapped file pages)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"dataset": str(args.dataset), "cache_key": cache_key(), "settings": args.assignments, "sizes": rows}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
