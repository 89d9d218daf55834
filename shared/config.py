"""Settings, read once from the environment into a frozen dataclass and passed in.

Every variable is listed in `VARIABLES` with its default and meaning; the README's configuration
table is generated from the same list (`recog config`), so the two cannot drift apart. A value that
cannot be read fails loudly at start instead of being silently replaced by a default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.stackfile import DEFAULT_REDIS_URL


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "REDIS_URL",
        "",
        "Redis to use, with its password if it has one (redis://:PASSWORD@host:6379/0). Empty: `recog up` starts "
        "a private Redis with a password of its own; other commands use the one of the `recog up` "
        "running on RECOG_DATA_DIR (it records where its parts answer in `stack.json` there), else fail, "
        "except `recog serve` and `recog worker`, which then use redis://127.0.0.1:6379/0.",
    ),
    Variable(
        "RECOG_API_URL",
        "",
        "API the client commands (`recog import`, `search`, `collections`, `tokens`) talk to, e.g. "
        "http://127.0.0.1:8080. Empty: the one of the `recog up` running on RECOG_DATA_DIR.",
    ),
    Variable(
        "RECOG_API_KEY",
        "",
        "Management API key of the client commands (their `--api-key` wins). Empty: RECOG_ADMIN_API_KEY, else "
        "the admin key `recog up` keeps in RECOG_DATA_DIR.",
    ),
    Variable(
        "RECOG_DATA_DIR",
        "./recog-data",
        "Where the blob store (`blobs/`: originals, thumbnails, features), saved indexes and the private Redis's "
        "data are kept. The API and every worker must see the same `blobs/`.",
    ),
    Variable(
        "RECOG_PUBLIC_URL",
        "",
        "Base URL written into returned links (e.g. https://recog.example.com). Empty: taken from each request's Host.",
    ),
    Variable(
        "RECOG_ALLOWED_HOSTS",
        "",
        "Host names the API answers for, comma-separated (others get 400); empty: any. Set it, or "
        "RECOG_PUBLIC_URL, when the API is reachable from the internet: links in responses follow the Host header.",
    ),
    Variable(
        "RECOG_SHARDS",
        "8",
        "Number of shards collections are spread over (a stable hash of the collection id). "
        "Fixed for the life of a deployment.",
    ),
    Variable(
        "RECOG_WORKER_SHARDS",
        "auto",
        "Shards this worker serves: `auto` (shared out among live workers by rendezvous hashing), `all`, "
        "or a fixed list such as `0,1,4-7`.",
    ),
    Variable("RECOG_REPLICAS", "2", "With `auto`, how many live workers serve each shard."),
    Variable("RECOG_ADMIN_API_KEY", "", "When set, a valid management API key (so scripts can drive a fresh stack)."),
    Variable("RECOG_MAX_UPLOAD_BYTES", "8388608", "Largest accepted image upload, in bytes (IMAGE_TOO_LARGE above)."),
    Variable(
        "RECOG_MAX_PIXELS",
        "40000000",
        "Largest accepted image, in pixels (width x height), against decompression bombs.",
    ),
    Variable(
        "RECOG_MIN_SIDE", "100", "Smallest accepted shorter side of a query image, in pixels (IMAGE_TOO_SMALL below)."
    ),
    Variable("RECOG_DEADLINE_MS", "5000", "How long a search may wait for a worker before it answers 504 TIMEOUT."),
    Variable(
        "RECOG_QUEUE_TARGET_MS",
        "0",
        "Longest a search should wait in a queue for a worker; searches beyond what the workers can start within it "
        "are refused at once with 503 SERVER_BUSY (0: a quarter of RECOG_DEADLINE_MS).",
    ),
    Variable(
        "RECOG_MAX_IN_FLIGHT", "256", "Searches one API process handles at once; more are answered 503 SERVER_BUSY."
    ),
    Variable(
        "RECOG_HEADER_TIMEOUT_SECONDS",
        "10",
        "A request's headers must arrive within this time, else its connection is closed (slow-client guard).",
    ),
    Variable(
        "RECOG_BODY_TIMEOUT_SECONDS",
        "60",
        "A request's body must arrive within this time, else 408 REQUEST_TIMEOUT.",
    ),
    Variable(
        "RECOG_MAX_CONNECTIONS",
        "1000",
        "Connections one API process holds at once; beyond it new requests get 503 at once (uvicorn).",
    ),
    Variable(
        "RECOG_TOKEN_CACHE_SECONDS",
        "0.5",
        "How long the API trusts a token lookup (revocation bites within this time).",
    ),
    Variable("RECOG_REPLY_TTL_SECONDS", "30", "Lifetime of a search reply key in Redis."),
    Variable(
        "RECOG_INGEST_TIMEOUT_SECONDS",
        "30",
        "How long a reference upload may wait for a worker to check it and extract its features before it is "
        "answered 503 SERVER_BUSY (workers serve uploads only when no search waits).",
    ),
    Variable(
        "RECOG_MAX_UPLOADS_IN_FLIGHT",
        "64",
        "Reference uploads one API process keeps waiting for the workers at once; more are answered 503 "
        "SERVER_BUSY at once (each holds one of the process's Redis connections while it waits).",
    ),
    Variable(
        "RECOG_PART_IMAGES",
        "50000",
        "A collection's images are indexed in parts of at most this many, each served like a collection of its "
        "own (by the workers of the shard its part hashes to); a search fans out to every part (0: one part). "
        "At 50,000 a part's worker keeps ~5.6 GB resident (its saved index, memory-mapped) and spends ~300 ms "
        "a search on one core (bench.parts, 200,000 references in 4 parts).",
    ),
    Variable(
        "RECOG_VOCABULARY",
        "",
        "A vocabulary tree file (.npz, `bench/train_vocab.py`) for workers to use instead of the shipped one, to "
        "measure it (`bench.accuracy`); saved indexes of another vocabulary are rebuilt. Empty: the shipped one.",
    ),
    Variable(
        "RECOG_SNAPSHOT_MIN_IMAGES",
        "1000",
        "Workers save the index of a collection with at least this many images under RECOG_DATA_DIR/indexes "
        "and open it on their next start instead of re-adding every image (0: save every collection).",
    ),
    Variable(
        "RECOG_WORKER_METRICS_PORT",
        "0",
        "When not 0, each worker serves Prometheus metrics (stage timings, jobs by outcome) on this port.",
    ),
    Variable(
        "RECOG_WORKER_METRICS_HOST",
        "127.0.0.1",
        "Address the worker metrics listen on (0.0.0.0 for a Prometheus on another host or container).",
    ),
    Variable("RECOG_LOG_LEVEL", "INFO", "Log level of every process."),
)

_DEFAULTS = {v.name: v.default for v in VARIABLES}


def _int(env: Mapping[str, str], name: str, low: int = 0) -> int:
    raw = env.get(name, _DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < low:
        raise ConfigError(f"{name}={value} must be at least {low}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, _DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}={value} must not be negative")
    return value


def parse_shard_list(text: str, shards: int) -> frozenset[int] | None:
    """None for `auto`; else `all` or comma-separated shard numbers and ranges (`0,2-3`), checked
    against `shards`."""
    text = text.strip()
    if text in ("", "auto"):
        return None
    if text == "all":
        return frozenset(range(shards))
    chosen: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ConfigError(f"RECOG_WORKER_SHARDS: {part!r} is not a shard number or range") from None
        if not 0 <= first <= last < shards:
            raise ConfigError(f"RECOG_WORKER_SHARDS: {part!r} is outside 0..{shards - 1}")
        chosen.update(range(first, last + 1))
    return frozenset(chosen)


@dataclass(frozen=True, kw_only=True)
class Settings:
    redis_url: str
    api_url: str  # "" unless set, or found by the CLI (shared.stackfile)
    api_key: str
    data_dir: Path
    public_url: str
    allowed_hosts: tuple[str, ...]
    shards: int
    worker_shards: frozenset[int] | None  # None: assigned automatically (shared.ownership)
    replicas: int
    admin_api_key: str
    max_upload_bytes: int
    max_pixels: int
    min_side: int
    deadline_ms: int
    queue_target_ms: int
    max_in_flight: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int
    token_cache_seconds: float
    reply_ttl_seconds: int
    ingest_timeout_seconds: float
    max_uploads_in_flight: int
    part_images: int
    worker_metrics_port: int
    worker_metrics_host: str
    snapshot_min_images: int
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        shards = _int(env, "RECOG_SHARDS", low=1)
        level = env.get("RECOG_LOG_LEVEL", _DEFAULTS["RECOG_LOG_LEVEL"]).upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"RECOG_LOG_LEVEL={level!r} is not DEBUG, INFO, WARNING or ERROR")
        deadline_ms = _int(env, "RECOG_DEADLINE_MS", low=50)
        return cls(
            redis_url=env.get("REDIS_URL") or DEFAULT_REDIS_URL,
            api_url=env.get("RECOG_API_URL", "").rstrip("/"),
            api_key=env.get("RECOG_API_KEY", ""),
            data_dir=Path(env.get("RECOG_DATA_DIR") or _DEFAULTS["RECOG_DATA_DIR"]).resolve(),
            public_url=env.get("RECOG_PUBLIC_URL", "").rstrip("/"),
            allowed_hosts=tuple(h.strip() for h in env.get("RECOG_ALLOWED_HOSTS", "").split(",") if h.strip()),
            shards=shards,
            worker_shards=parse_shard_list(env.get("RECOG_WORKER_SHARDS", "auto"), shards),
            replicas=_int(env, "RECOG_REPLICAS", low=1),
            admin_api_key=env.get("RECOG_ADMIN_API_KEY", ""),
            max_upload_bytes=_int(env, "RECOG_MAX_UPLOAD_BYTES", low=1024),
            max_pixels=_int(env, "RECOG_MAX_PIXELS", low=10_000),
            min_side=_int(env, "RECOG_MIN_SIDE", low=1),
            deadline_ms=deadline_ms,
            queue_target_ms=_int(env, "RECOG_QUEUE_TARGET_MS") or deadline_ms // 4,
            max_in_flight=_int(env, "RECOG_MAX_IN_FLIGHT", low=1),
            header_timeout_seconds=_float(env, "RECOG_HEADER_TIMEOUT_SECONDS"),
            body_timeout_seconds=_float(env, "RECOG_BODY_TIMEOUT_SECONDS"),
            max_connections=_int(env, "RECOG_MAX_CONNECTIONS", low=1),
            token_cache_seconds=_float(env, "RECOG_TOKEN_CACHE_SECONDS"),
            reply_ttl_seconds=_int(env, "RECOG_REPLY_TTL_SECONDS", low=1),
            ingest_timeout_seconds=_float(env, "RECOG_INGEST_TIMEOUT_SECONDS"),
            max_uploads_in_flight=_int(env, "RECOG_MAX_UPLOADS_IN_FLIGHT", low=1),
            part_images=_int(env, "RECOG_PART_IMAGES"),
            worker_metrics_port=_int(env, "RECOG_WORKER_METRICS_PORT"),
            worker_metrics_host=env.get("RECOG_WORKER_METRICS_HOST") or _DEFAULTS["RECOG_WORKER_METRICS_HOST"],
            snapshot_min_images=_int(env, "RECOG_SNAPSHOT_MIN_IMAGES"),
            log_level=level,
        )


def markdown_table() -> str:
    """The README's configuration table."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{v.name}` | `{v.default}` | {v.meaning} |" for v in VARIABLES]
    return "\n".join(rows)
