"""What the benches share: pictures, a stack of real processes, indexing, a load loop, figures.

The stack is the tests' own (`shared.testing.stack.Stack`): one `recog serve` and `recog worker`
processes on a Redis database the bench may flush. Loads are closed loops over loopback: a fixed
number of async httpx clients, each sending its next multipart search when the last one is
answered, until a time (and optionally a request count) runs out.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from tqdm import tqdm

from shared import keys
from shared.heartbeats import live_serving
from shared.shards import shard_of
from shared.testing import imagegen  # the same generator the tests use
from shared.testing.stack import ADMIN_KEY, Stack, stack_env, start_api

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "recognition-dev"
# The database the load, fault and front-end benches flush (before and after a run).
BENCH_REDIS_URL = os.environ.get("RECOG_BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
_PHOTO_CORNERS = np.array([[120, 80], [520, 110], [110, 420], [530, 400]], dtype=np.float32)


# --- pictures -----------------------------------------------------------------------------------


def _generated_reference(n: int) -> bytes:
    return imagegen.encode_jpeg(imagegen.textured(10_000 + n, 640, 480), 90)


def _generated_photo(n: int) -> bytes:
    picture = imagegen.textured(10_000 + n, 640, 480)
    return imagegen.encode_jpeg(imagegen.place(imagegen.clutter(n, 640, 480), picture, _PHOTO_CORNERS), 85)


def reference_images(count: int) -> list[bytes]:
    """Dev references and distractors first (real pictures), then generated ones up to `count`."""
    files = (
        sorted((DEV / "references").glob("*.jpg")) + sorted((DEV / "distractors").glob("*.jpg")) if DEV.exists() else []
    )
    images = [f.read_bytes() for f in files[:count]]
    images += [_generated_reference(n) for n in range(count - len(images))]
    return images


def query_images() -> list[bytes]:
    """The dev set's phone-like queries (positives and negatives), or generated photos without it."""
    if DEV.exists():
        manifest = json.loads((DEV / "manifest.json").read_text())
        return [(DEV / q["file"]).read_bytes() for q in manifest["queries"]]
    return [_generated_photo(n) for n in range(50)]


@dataclass(frozen=True)
class Reference:
    """A reference picture and photos of it (phone-like queries that should find it)."""

    image: bytes
    photos: list[bytes]


def photographed_references(count: int) -> list[Reference]:
    """`count` references that all have photos: the dev set's references with their positive
    queries first, then generated pictures each with one generated photo."""
    found: list[Reference] = []
    if DEV.exists():
        manifest = json.loads((DEV / "manifest.json").read_text())
        photos: dict[str, list[bytes]] = {}
        for query in manifest["queries"]:
            if query["expected"]:
                photos.setdefault(query["expected"], []).append((DEV / query["file"]).read_bytes())
        for ref in manifest["references"]:
            if len(found) < count and ref["id"] in photos:
                found.append(Reference((DEV / ref["file"]).read_bytes(), photos[ref["id"]]))
    found += [Reference(_generated_reference(n), [_generated_photo(n)]) for n in range(count - len(found))]
    return found


# --- the stack ----------------------------------------------------------------------------------


def start_stack(
    redis_url: str, data_dir: Path, workers: int, processes: int = 1, env: Mapping[str, str] | None = None
) -> Stack:
    """An API process (`--processes` uvicorn processes) and `workers` workers, ready to search;
    `env`: RECOG_* settings on top of the tests' (`stack_env`)."""
    stack = start_api(stack_env(redis_url, data_dir, **(env or {})), processes)
    try:
        for _ in range(workers):
            stack.start_worker()
        if workers:
            stack.wait_ready(timeout=90)
    except BaseException:
        stack.stop()
        raise
    return stack


# --- indexing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    """What `index` made: `tokens[c]` searches collection c; `placed[n]` = (collection, item) of image n."""

    tokens: list[str]
    collections: list[str]
    placed: list[tuple[int, str]]


async def index(
    url: str, images: Sequence[bytes], collections: int = 1, shards: int = 1, concurrency: int = 4
) -> Catalogue:
    """Creates `collections` collections, each on a shard of its own when `shards` allows (so the
    load spreads evenly over the shards), and adds the images round-robin, one item each, with
    `concurrency` uploads at a time."""
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        ids: list[str] = []
        used: set[int] = set()
        for _ in range(50 * collections):
            if len(ids) == collections:
                break
            created = await client.post("/api/v0/collection/", json={"name": f"bench-{time.time_ns()}"})
            uuid = created.json()["uuid"]
            shard = shard_of(uuid, shards)
            if shard in used and len(used) < min(collections, shards):
                await client.delete(f"/api/v0/collection/{uuid}/")
                continue
            used.add(shard)
            ids.append(uuid)
        tokens = [
            (await client.get("/api/v0/token/", params={"collection__uuid": c})).json()["objects"][0]["token"]
            for c in ids
        ]
        semaphore = asyncio.Semaphore(concurrency)
        bar = tqdm(total=len(images), desc="indexing", unit="img")
        placed: list[tuple[int, str]] = [(0, "")] * len(images)

        async def add(n: int, data: bytes) -> None:
            async with semaphore:
                c = n % len(ids)
                item = await client.post("/api/v0/item/", json={"collection": ids[c], "name": f"ref {n}"})
                response = await client.post(
                    "/api/v0/image/", data={"item": item.json()["uuid"]}, files={"file": ("r.jpg", data)}
                )
                if response.status_code != 201:
                    tqdm.write(f"reference {n} refused: {response.text[:120]}")
                placed[n] = (c, item.json()["uuid"])
                bar.update()

        await asyncio.gather(*(add(n, data) for n, data in enumerate(images)))
        bar.close()
    return Catalogue(tokens=tokens, collections=ids, placed=placed)


def wait_indexed(db: redis.Redis, catalogue: Catalogue, shards: int, timeout: float = 120) -> float:
    """Seconds until every live worker reports holding all the catalogue's images of the shards it
    serves (workers apply index changes from the event streams a little after the API accepts them)."""
    expected: dict[int, int] = {}
    for c, _ in catalogue.placed:
        shard = shard_of(catalogue.collections[c], shards)
        expected[shard] = expected.get(shard, 0) + 1
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        live = live_serving(db)
        beats = [db.hgetall(keys.worker(name)) for name in live]
        if live and all(
            int(beat.get(f"images:{s}".encode(), 0)) >= expected.get(s, 0)
            for beat, served in zip(beats, live.values(), strict=True)
            for s in served
        ):
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"the workers did not report all {len(catalogue.placed)} images within {timeout} s")


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Search:
    """One request to send: the token, the photo, the item it should find (or None), a label."""

    token: str
    image: bytes
    expected: str | None = None
    tag: int = 0


@dataclass(frozen=True)
class Outcome:
    """What one request got. `sent`/`answered`: time.monotonic(); `status` 0 = no HTTP answer."""

    sent: float
    answered: float
    status: int
    tag: int
    found: bool | None = None  # the expected item came first (None: nothing expected, or not 200)
    server_ms: float | None = None  # the response's own `search_time`
    worker_ms: float | None = None  # the worker's share of it (the response's `Server-Timing`)

    @property
    def ms(self) -> float:
        return (self.answered - self.sent) * 1000


def searches_of(catalogue: Catalogue, references: Sequence[Reference]) -> list[Search]:
    """Every photo of every reference, addressed to its collection and expecting its item."""
    return [
        Search(catalogue.tokens[c], photo, item, c)
        for (c, item), ref in zip(catalogue.placed, references, strict=True)
        for photo in ref.photos
    ]


@dataclass
class Load:
    """A closed-loop load: `concurrency` clients, each sending a random one of `searches` as soon as
    its previous request is answered, for `seconds` (and at most `limit` requests), or until `stop`."""

    url: str
    searches: Sequence[Search]
    concurrency: int
    seconds: float
    limit: int | None = None
    timeout: float = 30.0
    desc: str = "searching"
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)

    def run(self) -> list[Outcome]:
        """Runs the load on an event loop of its own (so it can also run in a thread)."""
        asyncio.run(self._run())
        return self.outcomes

    def in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="load", daemon=True)
        thread.start()
        return thread

    async def _run(self) -> None:
        end = time.monotonic() + self.seconds
        rng = random.Random(1)
        sent = 0
        bar = tqdm(
            total=math.ceil(self.seconds) if self.seconds < 3600 else None, desc=self.desc, unit="s", leave=False
        )

        def more() -> bool:
            return time.monotonic() < end and not self.stop.is_set() and (self.limit is None or sent < self.limit)

        async def client_loop() -> None:
            nonlocal sent
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout, limits=limits) as client:
                while more():
                    sent += 1
                    search = rng.choice(self.searches)
                    self.outcomes.append(await _send(client, search))

        async def ticker() -> None:
            last = time.monotonic()
            while more():
                await asyncio.sleep(0.5)
                if time.monotonic() - last >= 1:
                    bar.update(1 if bar.total is None else min(1, bar.total - bar.n))
                    last += 1

        await asyncio.gather(ticker(), *(client_loop() for _ in range(self.concurrency)))
        bar.close()


async def _send(client: httpx.AsyncClient, search: Search) -> Outcome:
    sent = time.monotonic()
    try:
        response = await client.post(
            "/v1/search", data={"token": search.token}, files={"image": ("q.jpg", search.image, "image/jpeg")}
        )
    except httpx.HTTPError:
        return Outcome(sent, time.monotonic(), 0, search.tag)
    answered = time.monotonic()
    found, server_ms, worker_ms = None, None, None
    if response.status_code == 200:
        body = response.json()
        server_ms = float(body["search_time"])
        timing = re.search(r"worker;dur=([0-9.]+)", response.headers.get("server-timing", ""))
        worker_ms = float(timing[1]) if timing else None
        if search.expected is not None:
            found = [r["item"]["uuid"] for r in body["results"][:1]] == [search.expected]
    return Outcome(sent, answered, response.status_code, search.tag, found, server_ms, worker_ms)


def summarise(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """Rate, latency percentiles (ms) and status counts (status 0: no HTTP answer)."""
    latencies = sorted(o.ms for o in outcomes)
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    expected = [o for o in outcomes if o.found is not None]
    server = [o.server_ms for o in outcomes if o.server_ms is not None]
    return {
        "requests": len(outcomes),
        "seconds": round(seconds, 2),
        "per_second": round(len(outcomes) / seconds, 1) if seconds else 0.0,
        "latency_ms_p50": _percentile(latencies, 50),
        "latency_ms_p95": _percentile(latencies, 95),
        "latency_ms_p99": _percentile(latencies, 99),
        "latency_ms_max": round(latencies[-1], 1) if latencies else None,
        "server_search_time_ms_p50": statistics.median(server) if server else None,
        "found_first": f"{sum(bool(o.found) for o in expected)}/{len(expected)}",
        "statuses": dict(sorted(statuses.items())),
    }


def _percentile(ordered: Sequence[float], p: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)], 1)


# --- CPU accounting -----------------------------------------------------------------------------


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _machine_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICKS, sum(values) / _TICKS


class CpuMeter:
    """CPU used by named processes over a window, in cores (1.0 = one core busy all the time),
    and how busy the whole machine was (others' processes included)."""

    def __init__(self, pids: Mapping[str, Sequence[int]]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self._machine = (0.0, 0.0)
        self.started = 0.0

    def __enter__(self) -> CpuMeter:
        self._start = {name: sum(map(_process_seconds, pids)) for name, pids in self._pids.items()}
        self._machine = _machine_seconds()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.started
        used = {name: sum(map(_process_seconds, pids)) - self._start[name] for name, pids in self._pids.items()}
        busy, total = _machine_seconds()
        self.cores = {name: round(seconds / wall, 2) for name, seconds in used.items()}
        self.cpu_seconds = used
        self.machine_busy = round((busy - self._machine[0]) / max(total - self._machine[1], 1e-9), 2)


def redis_pid(connection: redis.Redis) -> list[int]:
    """The Redis server's pid when it runs on this machine (its CPU is then measurable)."""
    pid = int(connection.info("server")["process_id"])
    return [pid] if Path(f"/proc/{pid}").exists() else []


# --- reporting ----------------------------------------------------------------------------------


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A plain-text table of `rows`, one column per (key, heading)."""
    cells = [[h for _, h in columns]] + [["" if r.get(k) is None else str(r.get(k)) for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


def bench_data_dir(name: str) -> Path:
    return Path(os.environ.get("TMPDIR", "/tmp")) / f"recog-bench-{name}-{os.getpid()}"


def cpu_note() -> str:
    return f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start"


def timed(label: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    value = action()
    tqdm.write(f"{label}: {time.monotonic() - started:.1f} s")
    return value
