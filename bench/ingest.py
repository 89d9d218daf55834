"""Indexing through the HTTP API now that workers prepare uploads and features live in the blob store.

Three figures, each from real processes on a Redis database the bench flushes:

1. Throughput: reference images indexed per second through `POST /api/v0/image/` (one item each,
   `--concurrency` uploads at a time) with 1 and with 2 workers, and the ratio; the Redis memory
   and blob-store bytes each image added.
2. Redis bytes per image at scale: the `used_memory` delta over `--catalogue` images (10,000 by
   default) written by the catalogue code the API runs for an upload (`shared.catalog`: the image's
   entry, its listings, its reference and its stream event), without and with one item per image.
   Uploading 10,000 images over HTTP would take minutes of CPU on workers without changing a byte of
   what Redis keeps, so this part writes the catalogue directly.
3. Searches during a bulk import: search latency of a steady stream of searches alone, then the
   same stream while `--bulk` images are uploaded; p50 and p95 ratios (target: within 1.5x).

    .venv/bin/python -m bench.ingest [--images 120] [--catalogue 10000] [--bulk 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from tqdm import tqdm

from bench.harness import (
    ROOT,
    Load,
    bench_data_dir,
    cpu_note,
    index,
    photographed_references,
    searches_of,
    start_stack,
    summarise,
    table,
    write_result,
)
from shared import catalog
from shared.ids import new_id

SHARDS = 4  # the stack's (shared.testing.stack.stack_env)


def used_memory(connection: redis.Redis) -> int:
    return int(connection.info("memory")["used_memory"])


def folder_bytes(root: Path, name: str | None = None) -> int:
    return sum(p.stat().st_size for p in root.rglob(name or "*") if p.is_file())


def throughput(redis_url: str, workers: int, images: list[bytes], concurrency: int) -> dict[str, Any]:
    """Images indexed per second over HTTP with `workers` workers; Redis and blob bytes per image."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    data_dir = bench_data_dir(f"ingest-{workers}")
    stack = start_stack(redis_url, data_dir, workers)
    try:
        before = used_memory(connection)
        started = time.monotonic()
        asyncio.run(index(stack.url, images, concurrency=concurrency))
        seconds = time.monotonic() - started
        time.sleep(1.0)  # answered jobs' keys are deleted as they finish; let expiring ones go
        blobs = data_dir / "blobs"
        return {
            "workers": workers,
            "images": len(images),
            "seconds": round(seconds, 2),
            "images_per_second": round(len(images) / seconds, 2),
            "redis_bytes_per_image_with_item": round((used_memory(connection) - before) / len(images)),
            "blob_bytes_per_image": round(folder_bytes(blobs) / len(images)),
            "feature_bytes_per_image": round(folder_bytes(blobs, "features.bin") / len(images)),
        }
    finally:
        stack.stop()
        connection.flushdb()
        shutil.rmtree(data_dir, ignore_errors=True)


async def catalogue_bytes(redis_url: str, count: int) -> dict[str, Any]:
    """Redis bytes per image for `count` images written as an upload writes them (items apart)."""
    connection = aioredis.Redis.from_url(redis_url)
    await connection.flushdb()
    try:
        collection = await catalog.create_collection(connection, f"bench-{time.time_ns()}", SHARDS)
        start = int((await connection.info("memory"))["used_memory"])
        items = []
        for n in tqdm(range(count), desc="items", unit="item"):
            fields = {**catalog.ITEM_DEFAULTS, "collection": collection["uuid"], "name": f"poster {n}"}
            items.append((await catalog.create_child(connection, catalog.ITEM, fields))["uuid"])
        with_items = int((await connection.info("memory"))["used_memory"])
        for item in tqdm(items, desc="images", unit="image"):
            await catalog.create_image(
                connection,
                image_id=new_id(),
                item_id=item,
                recognisability=4,
                sha256=catalog.picture_digest(secrets.token_bytes(16)),
                shards=SHARDS,
            )
        done = int((await connection.info("memory"))["used_memory"])
        return {
            "images": count,
            "redis_bytes_per_image": round((done - with_items) / count),
            "redis_bytes_per_item": round((with_items - start) / count),
            "redis_bytes_per_image_with_item": round((done - start) / count),
        }
    finally:
        await connection.flushdb()
        await connection.aclose()


def searches_during_bulk(redis_url: str, bulk: int, seconds: float, concurrency: int) -> dict[str, Any]:
    """Search latency of a steady stream alone, then while `bulk` images are uploaded (2 workers)."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    data_dir = bench_data_dir("ingest-bulk")
    stack = start_stack(redis_url, data_dir, 2)
    try:
        references = photographed_references(50)
        catalogue = asyncio.run(index(stack.url, [r.image for r in references]))
        searches = searches_of(catalogue, references)
        time.sleep(1.5)
        alone = Load(stack.url, searches, concurrency, seconds, desc="searches alone").run()
        load = Load(stack.url, searches, concurrency, 3600, desc="searches during the import")
        thread = load.in_thread()
        started = time.monotonic()
        extra = [r.image for r in photographed_references(50 + bulk)[50:]]
        asyncio.run(index(stack.url, extra, concurrency=8))
        import_seconds = time.monotonic() - started
        load.stop.set()
        thread.join()
        during = [o for o in load.outcomes if o.sent - load.outcomes[0].sent < import_seconds] if load.outcomes else []
        quiet, busy = summarise(alone, seconds), summarise(during, import_seconds)
        return {
            "bulk_images": bulk,
            "import_seconds": round(import_seconds, 2),
            "alone": quiet,
            "during_import": busy,
            "p50_ratio": _ratio(busy["latency_ms_p50"], quiet["latency_ms_p50"]),
            "p95_ratio": _ratio(busy["latency_ms_p95"], quiet["latency_ms_p95"]),
            "found_first_during_import": busy["found_first"],
        }
    finally:
        stack.stop()
        connection.flushdb()
        shutil.rmtree(data_dir, ignore_errors=True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=120, help="images uploaded per worker count")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads at a time")
    parser.add_argument("--catalogue", type=int, default=10_000, help="images written for the Redis-bytes figure")
    parser.add_argument("--bulk", type=int, default=200, help="images uploaded during the search stream")
    parser.add_argument("--seconds", type=float, default=20, help="length of the search stream alone")
    parser.add_argument("--search-concurrency", type=int, default=2, help="clients of the search stream")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("RECOG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="a Redis database the bench may flush (default db 12)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = parser.parse_args()

    machine = cpu_note()
    images = [r.image for r in photographed_references(args.images)]
    runs = [throughput(args.redis_url, workers, images, args.concurrency) for workers in (1, 2)]
    print(table(runs, [(k, k) for k in runs[0]]))
    scaling = round(runs[1]["images_per_second"] / runs[0]["images_per_second"], 2)
    print(f"2 workers / 1 worker: {scaling}x images per second")

    stored = asyncio.run(catalogue_bytes(args.redis_url, args.catalogue))
    print(table([stored], [(k, k) for k in stored]))

    bulk = searches_during_bulk(args.redis_url, args.bulk, args.seconds, args.search_concurrency)
    rows = [{"stream": "alone", **bulk["alone"]}, {"stream": "during import", **bulk["during_import"]}]
    print(table(rows, [(k, k) for k in ("stream", "requests", "latency_ms_p50", "latency_ms_p95", "found_first")]))
    print(f"search latency during the import: p50 x{bulk['p50_ratio']}, p95 x{bulk['p95_ratio']}")

    write_result(
        args.out,
        {
            "machine": machine,
            "throughput": runs,
            "two_worker_ratio": scaling,
            "catalogue": stored,
            "searches_during_bulk_import": bulk,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
