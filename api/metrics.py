"""Prometheus metrics of the front end.

Request counters and histograms are updated as requests pass; the queue and worker gauges are
read from Redis when Prometheus scrapes (`refresh`), so they are true at scrape time in every API
process without any background task.
"""

from __future__ import annotations

import os
import time

import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import heartbeats, queues
from shared.heartbeats import Heartbeat, indexed_images, owners_by_shard

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)

REQUESTS = Counter("recog_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("recog_request_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS)
QUEUE_WAIT_SECONDS = Histogram(
    "recog_queue_wait_seconds", "Search round trip minus worker time (queueing and transport)", buckets=_LATENCY_BUCKETS
)
MATCH_SECONDS = Histogram("recog_match_seconds", "Worker-side time of a search", buckets=_LATENCY_BUCKETS)
REJECTED = Counter("recog_rejected_total", "Requests answered with an error code", ["code"])
REFUSED = Counter(
    "recog_searches_refused_total",
    "Searches refused with 503 before queueing, by limit: capacity (what the workers can answer in time) "
    "or process (RECOG_MAX_IN_FLIGHT)",
    ["limit"],
)
REQUEUED = Counter(
    "recog_searches_requeued_total", "Searches queued again because the worker that took them went silent"
)
PARTS_MISSED = Counter(
    "recog_search_parts_missed_total",
    "Searches of a collection in parts answered 504 because a part was not answered by the deadline",
)
IN_FLIGHT = Gauge("recog_searches_in_flight", "Searches waiting for a worker", multiprocess_mode="livesum")
# Gauges read from Redis at scrape time: with several API processes, the most recent read wins.
QUEUE_DEPTH = Gauge("recog_queue_depth", "Jobs waiting in a shard's queue", ["shard"], multiprocess_mode="mostrecent")
INGEST_QUEUE_DEPTH = Gauge(
    "recog_ingest_queue_depth",
    "Reference uploads waiting in a shard's upload queue (workers take them when no search waits)",
    ["shard"],
    multiprocess_mode="mostrecent",
)
REDIS_UP = Gauge(
    "recog_redis_up", "1 when Redis answered the last scrape's reads in time, else 0", multiprocess_mode="mostrecent"
)
REDIS_MEMORY = Gauge(
    "recog_redis_used_memory_bytes", "Memory Redis uses (INFO used_memory)", multiprocess_mode="mostrecent"
)
REDIS_MAX_MEMORY = Gauge(
    "recog_redis_max_memory_bytes", "Redis's maxmemory setting (0: no limit)", multiprocess_mode="mostrecent"
)
OLDEST_JOB = Gauge(
    "recog_queue_oldest_job_age_seconds",
    "Age of the oldest queued job of a shard",
    ["shard"],
    multiprocess_mode="mostrecent",
)
LIVE_WORKERS = Gauge(
    "recog_live_workers", "Workers with a fresh heartbeat serving a shard", ["shard"], multiprocess_mode="mostrecent"
)
INDEXED_IMAGES = Gauge(
    "recog_indexed_images",
    "Reference images indexed for a shard (as its workers report)",
    ["shard"],
    multiprocess_mode="mostrecent",
)
INDEX_LOAD_SECONDS = Gauge(
    "recog_index_load_seconds",
    "Longest time a live worker took to load a shard's index",
    ["shard"],
    multiprocess_mode="mostrecent",
)


def observe_search(worker_ms: float, round_trip_ms: float) -> None:
    MATCH_SECONDS.observe(worker_ms / 1000)
    QUEUE_WAIT_SECONDS.observe(max(round_trip_ms - worker_ms, 0.0) / 1000)


def observe_refusal(limit: str) -> None:
    REFUSED.labels(limit).inc()


def observe_error(code: str) -> None:
    REJECTED.labels(code).inc()


async def live_workers(redis: aioredis.Redis, shards: int) -> dict[int, list[Heartbeat]]:
    """Per shard, the heartbeats of the live workers serving it."""
    now = time.time()
    return owners_by_shard(await heartbeats.read_async(redis, now), shards, now)


async def refresh(redis: aioredis.Redis, shards: int) -> None:
    """Sets the Redis, queue and worker gauges from Redis, in two round trips."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.info("memory")
        queues.stage_depths(pipe, shards)
        queues.stage_depths(pipe, shards, queues.ingest_queue_key)
        queues.stage_heads(pipe, shards)
        heartbeats.stage_roster(pipe, now)
        memory, *lists, roster = await pipe.execute()
        depths, uploads, heads = lists[:shards], lists[shards : 2 * shards], lists[2 * shards :]
        queued = queues.stage_enqueued_at(pipe, heads)
        names = heartbeats.stage_beats(pipe, roster)
        fetched = await pipe.execute() if queued or names else []
    enqueued = dict(zip(queued, fetched[: len(queued)], strict=True))
    beats = heartbeats.parse_beats(names, fetched[len(queued) :])
    REDIS_MEMORY.set(memory["used_memory"])
    REDIS_MAX_MEMORY.set(memory.get("maxmemory", 0))
    for shard in range(shards):
        QUEUE_DEPTH.labels(str(shard)).set(depths[shard])
        INGEST_QUEUE_DEPTH.labels(str(shard)).set(uploads[shard])
        OLDEST_JOB.labels(str(shard)).set(queues.job_age(enqueued.get(shard), now) or 0.0)
    for shard, beats_of_shard in owners_by_shard(beats, shards, now).items():
        LIVE_WORKERS.labels(str(shard)).set(len(beats_of_shard))
        INDEXED_IMAGES.labels(str(shard)).set(indexed_images(beats_of_shard, shard))
        INDEX_LOAD_SECONDS.labels(str(shard)).set(
            max((b.load_seconds.get(shard, 0.0) for b in beats_of_shard), default=0.0)
        )


def exposition() -> tuple[bytes, str]:
    """The metrics of this process, or of every API process when uvicorn runs several
    (`recog serve --processes N` sets PROMETHEUS_MULTIPROC_DIR for prometheus-client's
    multiprocess mode, so any process answers for all of them)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus-client leaves it untyped
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP request by its route template (not its path, so ids don't explode labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(template, scope["method"], str(status)).inc()
            REQUEST_SECONDS.labels(template).observe(time.perf_counter() - started)
