"""Searches per second and latency of one worker over a 1,000-image collection, end to end over HTTP.

Starts its own API process and worker(s) on a Redis database of its own, indexes references
(the dev set's references and distractors from ../shared/data/recognition-dev, topped up with
generated pictures), then drives /v1/search with real multipart uploads from a few concurrent
clients. Prints the figures and writes them to bench/results/throughput.json.

    .venv/bin/python bench/throughput.py [--images 1000] [--workers 1] [--concurrency 4] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import redis
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import imagegen  # noqa: E402  (the same generator the tests use)
from tests.conftest import ADMIN_KEY, free_port, recog_command, stack_env  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "recognition-dev"


def reference_images(count: int) -> list[bytes]:
    """Dev references and distractors first (real pictures), then generated ones up to `count`."""
    files = sorted((DEV / "references").glob("*.jpg")) + sorted((DEV / "distractors").glob("*.jpg")) if DEV.exists() else []
    images = [f.read_bytes() for f in files[:count]]
    seed = 10_000
    while len(images) < count:
        images.append(imagegen.encode_jpeg(imagegen.textured(seed, 640, 480), 90))
        seed += 1
    return images


def query_images() -> list[bytes]:
    """The dev set's phone-like queries (positives and negatives), or generated photos without it."""
    if DEV.exists():
        manifest = json.loads((DEV / "manifest.json").read_text())
        return [(DEV / q["file"]).read_bytes() for q in manifest["queries"]]
    corners = np.array([[120, 80], [520, 110], [110, 420], [530, 400]], dtype=np.float32)
    return [
        imagegen.encode_jpeg(imagegen.place(imagegen.clutter(s, 640, 480), imagegen.textured(10_000 + s, 640, 480), corners), 85)
        for s in range(50)
    ]


def start_stack(redis_url: str, workers: int, data_dir: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    port = free_port()
    env = stack_env(redis_url, data_dir)
    procs = [subprocess.Popen([*recog_command(), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env)]
    procs += [subprocess.Popen([*recog_command(), "worker"], env=env) for _ in range(workers)]
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return url, procs
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the stack did not become ready within 60 s")


async def index(url: str, images: list[bytes]) -> str:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        collection = (await client.post("/api/v0/collection/", json={"name": f"bench-{time.time_ns()}"})).json()["uuid"]
        token = (await client.get("/api/v0/token/", params={"collection__uuid": collection})).json()["objects"][0]["token"]
        semaphore = asyncio.Semaphore(4)
        bar = tqdm(total=len(images), desc="indexing", unit="img")

        async def add(n: int, data: bytes) -> None:
            async with semaphore:
                item = await client.post("/api/v0/item/", json={"collection": collection, "name": f"ref {n}"})
                response = await client.post("/api/v0/image/", data={"item": item.json()["uuid"]}, files={"file": ("r.jpg", data)})
                if response.status_code != 201:
                    tqdm.write(f"reference {n} refused: {response.text[:120]}")
                bar.update()

        await asyncio.gather(*(add(n, data) for n, data in enumerate(images)))
        bar.close()
    return token


async def load(url: str, token: str, queries: list[bytes], concurrency: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    search_times: list[int] = []
    end = time.monotonic() + seconds
    rng = random.Random(1)
    bar = tqdm(total=int(seconds), desc="searching", unit="s")

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while time.monotonic() < end:
                query = rng.choice(queries)
                started = time.perf_counter()
                response = await client.post("/v1/search", data={"token": token}, files={"image": ("q.jpg", query)})
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 200:
                    search_times.append(response.json()["search_time"])

    async def ticker() -> None:
        while time.monotonic() < end:
            await asyncio.sleep(1)
            bar.update()

    started = time.monotonic()
    await asyncio.gather(ticker(), *(client_loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    bar.close()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "searches_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1),
        "latency_ms_p99": round(quantiles[98], 1),
        "server_search_time_ms_p50": statistics.median(search_times) if search_times else None,
        "statuses": statuses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--redis-url", default=os.environ.get("RECOG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
                        help="a Redis database the bench may flush (default db 11)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "throughput.json")
    args = parser.parse_args()

    connection = redis.Redis.from_url(args.redis_url)
    connection.flushdb()
    data_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"recog-bench-{os.getpid()}"
    url, procs = start_stack(args.redis_url, args.workers, data_dir)
    try:
        token = asyncio.run(index(url, reference_images(args.images)))
        time.sleep(1.5)
        figures = asyncio.run(load(url, token, query_images(), args.concurrency, args.seconds))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        connection.flushdb()
    result = {
        "bench": "throughput",
        "images": args.images,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
