"""Searches per second and latency of one worker over a 1,000-image collection, end to end over HTTP.

Starts its own API process and worker(s) on a Redis database of its own, indexes references
(the dev set's references and distractors from ../shared/data/recognition-dev, topped up with
generated pictures), then drives /v1/search with real multipart uploads from a few concurrent
clients. Prints the figures and writes them to bench/results/throughput.json.

    .venv/bin/python -m bench.throughput [--images 1000] [--workers 1] [--concurrency 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path

import redis

from bench.harness import (
    ROOT,
    Load,
    Search,
    bench_data_dir,
    index,
    query_images,
    reference_images,
    start_stack,
    summarise,
    write_result,
)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("RECOG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="a Redis database the bench may flush (default db 11)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args()

    connection = redis.Redis.from_url(args.redis_url)
    connection.flushdb()
    stack = start_stack(args.redis_url, bench_data_dir("throughput"), args.workers)
    try:
        token = asyncio.run(index(stack.url, reference_images(args.images))).tokens[0]
        time.sleep(1.5)
        searches = [Search(token, query) for query in query_images()]
        started = time.monotonic()
        outcomes = Load(stack.url, searches, args.concurrency, args.seconds).run()
        figures = summarise(outcomes, time.monotonic() - started)
    finally:
        stack.stop()
        connection.flushdb()
    result = {
        "bench": "throughput",
        "images": args.images,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "requests": figures["requests"],
        "seconds": figures["seconds"],
        "searches_per_second": figures["per_second"],
        "latency_ms_p50": figures["latency_ms_p50"],
        "latency_ms_p99": figures["latency_ms_p99"],
        "server_search_time_ms_p50": figures["server_search_time_ms_p50"],
        "statuses": figures["statuses"],
    }
    print(json.dumps(result, indent=2))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
