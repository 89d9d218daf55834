"""Searches per second, latency and status counts as workers are added: 1, 2, 3, 4 workers.

One cluster (an API process and workers on their own Redis database): the references are indexed
once into `--collections` collections, each on a shard of its own, so the load spreads over the
shards; then, for each worker count, workers are added until there are that many, the bench waits
until shard ownership has converged on them, and drives /v1/search with real multipart photo
uploads at the same offered concurrency (a closed loop of `--concurrency` async httpx clients over
loopback) for `--seconds`. Scaling efficiency is throughput(N) / (N x throughput(1)).

CPU use of the workers, the API and the whole machine is measured for each point, so a curve that
flattens can be read against the cores there are. Prints a table and writes bench/results/load.json.

    .venv/bin/python -m bench.load [--workers 1,2,3,4] [--concurrency 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import time
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from bench.harness import (
    BENCH_REDIS_URL,
    ROOT,
    CpuMeter,
    Load,
    bench_data_dir,
    cpu_note,
    index,
    photographed_references,
    redis_pid,
    searches_of,
    start_stack,
    summarise,
    table,
    wait_indexed,
    write_result,
)
from shared.testing.stack import wait_converged

COLUMNS = [
    ("workers", "workers"),
    ("per_second", "req/s"),
    ("efficiency", "efficiency"),
    ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p95", "p95 ms"),
    ("latency_ms_p99", "p99 ms"),
    ("status_text", "statuses"),
    ("found_first", "found"),
    ("worker_cores", "worker cores"),
    ("api_cores", "api cores"),
    ("machine_busy", "machine busy"),
]


def worker_counts(text: str) -> list[int]:
    counts = sorted({int(n) for n in text.split(",")})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError("worker counts are whole numbers from 1, e.g. 1,2,3,4")
    return counts


def observation(points: list[dict[str, Any]]) -> str:
    """What the curve shows, from the figures: the efficiency per N and where it stops growing."""
    parts = [f"N={p['workers']}: {p['efficiency']:.2f}" for p in points]
    lines = [f"scaling efficiency (throughput(N) / (N x throughput(1))): {', '.join(parts)}"]
    for before, after in itertools.pairwise(points):
        gain = after["per_second"] / before["per_second"] - 1 if before["per_second"] else 0.0
        lines.append(
            f"  {before['workers']} -> {after['workers']} workers: throughput {gain:+.0%}, "
            f"workers used {before['worker_cores']} -> {after['worker_cores']} cores"
        )
    lines.append(
        f"this machine has {os.cpu_count()} cores; the whole machine was "
        f"{max(p['machine_busy'] for p in points):.0%} busy at the busiest point (other processes included)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers", type=worker_counts, default=[1, 2, 3, 4], help="worker counts to measure (default 1,2,3,4)"
    )
    parser.add_argument("--references", type=int, default=200, help="references indexed (default %(default)s)")
    parser.add_argument(
        "--collections", type=int, default=8, help="collections the references are spread over (default %(default)s)"
    )
    parser.add_argument("--shards", type=int, default=8, help="RECOG_SHARDS (default %(default)s)")
    parser.add_argument(
        "--replicas", type=int, default=2, help="RECOG_REPLICAS: workers per shard (default %(default)s)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="offered concurrency: clients in the closed loop (default %(default)s)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20, help="measured seconds per worker count (default %(default)s)"
    )
    parser.add_argument(
        "--requests", type=int, default=None, help="stop a point after this many requests (default: time only)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2, help="unmeasured load before each point, seconds (default %(default)s)"
    )
    parser.add_argument(
        "--redis-url", default=BENCH_REDIS_URL, help="a Redis database the bench flushes (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = parser.parse_args()

    db = redis.Redis.from_url(args.redis_url)
    db.flushdb()
    note = cpu_note()
    env = {"RECOG_SHARDS": str(args.shards), "RECOG_REPLICAS": str(args.replicas)}
    stack = start_stack(args.redis_url, bench_data_dir("load"), args.workers[0], env=env)
    points: list[dict[str, Any]] = []
    try:
        references = photographed_references(args.references)
        catalogue = asyncio.run(index(stack.url, [r.image for r in references], args.collections, args.shards))
        searches = searches_of(catalogue, references)
        tqdm.write(f"workers hold every image {wait_indexed(db, catalogue, args.shards):.1f} s after indexing")
        for count in args.workers:
            while len(stack.workers) < count:
                stack.start_worker()
            settled = wait_converged(db, count, args.shards, args.replicas, timeout=60)
            wait_indexed(db, catalogue, args.shards)
            tqdm.write(f"{count} worker(s): shard ownership converged in {settled:.1f} s")
            Load(stack.url, searches, args.concurrency, args.warmup, desc="warm-up").run()
            pids = {
                "workers": [w.pid for w in stack.workers],
                "api": [p.pid for p in stack.processes],
                "redis": redis_pid(db),
            }
            with CpuMeter(pids) as cpu:
                started = time.monotonic()
                outcomes = Load(
                    stack.url, searches, args.concurrency, args.seconds, args.requests, desc=f"{count} worker(s)"
                ).run()
                figures = summarise(outcomes, time.monotonic() - started)
            points.append(
                {
                    "workers": count,
                    **figures,
                    "worker_cores": cpu.cores["workers"],
                    "api_cores": cpu.cores["api"],
                    "redis_cores": cpu.cores["redis"],
                    "machine_busy": cpu.machine_busy,
                }
            )
    finally:
        stack.stop()
        db.flushdb()
    base = points[0]["per_second"] / points[0]["workers"]
    for point in points:
        point["efficiency"] = round(point["per_second"] / (point["workers"] * base), 2) if base else 0.0
        point["status_text"] = " ".join(f"{k}:{v}" for k, v in point["statuses"].items())
    print(table(points, COLUMNS))
    print(observation(points))
    result = {
        "bench": "load",
        "machine": f"{platform.machine()}, {note}",
        "references": args.references,
        "collections": args.collections,
        "shards": args.shards,
        "replicas": args.replicas,
        "concurrency": args.concurrency,
        "seconds_per_point": args.seconds,
        "points": [{k: v for k, v in p.items() if k != "status_text"} for p in points],
        "observation": observation(points).splitlines(),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
