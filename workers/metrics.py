"""Prometheus metrics of one worker process, served on `RECOG_WORKER_METRICS_PORT` when set.

The front end's /metrics already shows every shard's queue depth and live workers (read from
Redis); these add what only the worker knows: how its search time splits into stages, how
many jobs it dropped because their deadline had passed while they queued, how long uploads take
to prepare, and how many stored images it did not index or extracted again.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

_STAGE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1)

JOBS = Counter("recog_worker_jobs_total", "Search jobs taken from the queues, by outcome", ["outcome"])
STAGE_SECONDS = Histogram(
    "recog_worker_stage_seconds", "Worker-side time of a search by stage", ["stage"], buckets=_STAGE_BUCKETS
)
# reason: `unreadable` (features that cannot be decoded), `missing` (no features in the blob store).
SKIPPED_IMAGES = Counter(
    "recog_worker_skipped_images_total", "Stored images the worker did not index, by reason", ["reason"]
)
REEXTRACTED_IMAGES = Counter(
    "recog_worker_reextracted_images_total",
    "Stored images whose features were extracted again from the original (made under other settings)",
)
# outcome: `indexed`, `dropped` (its client had stopped waiting) or the contract error code.
INGESTS = Counter("recog_worker_ingests_total", "Reference uploads prepared by the worker, by outcome", ["outcome"])
SEARCHES_DURING_UPLOADS = Counter(
    "recog_worker_searches_during_uploads_total",
    "Searches the worker served between the stages of an upload it was preparing",
)
INGEST_SECONDS = Histogram(
    "recog_worker_ingest_seconds",
    "Worker-side time to prepare one reference upload (checks, features, thumbnails, writes)",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5),
)


def observe(outcome: str, timings_ms: dict[str, float]) -> None:
    JOBS.labels(outcome).inc()
    for stage, ms in timings_ms.items():
        STAGE_SECONDS.labels(stage).observe(ms / 1000)


def serve(port: int, host: str) -> None:
    """Starts the /metrics HTTP endpoint on a daemon thread (port 0: none)."""
    if port:
        start_http_server(port, addr=host)
