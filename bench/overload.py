"""Goodput under overload, the refusal latency, and the Redis commands a search costs.

One stack like `recog up --workers 2` (an API process and two workers, `RECOG_DEADLINE_MS=1000`)
on its own Redis database, a small collection, then closed-loop clients sending real photos to
/v1/search (each sends its next request as soon as the previous one is answered, 503s included:
the worst case, a client that ignores Retry-After). The clients are `bench.rawload`'s by default:
phones do not share the workers' cores, so the load generator should take as little of them as
it can (`--client httpx` for httpx's, about 0.8 ms of CPU a request):

1. capacity at 1x: the rate of correct 200s with `--base-clients` clients (enough to keep both
   workers busy with a short queue), the reference the other points are compared with;
2. 2x and 10x: twice and ten times as many clients; goodput is the rate of correct 200s answered
   within the deadline, as a share of the 1x capacity; the status mix and the p50/p99 of 200s and
   of 503s;
3. Redis commands per search, by command, from `INFO commandstats` around a sequential run (low
   load) and around the 2x point (high load): everything the deployment sent to Redis (API,
   workers' loops, heartbeats) divided by the searches answered.

Prints a table and writes bench/results/overload.json.

    .venv/bin/python -m bench.overload [--seconds 20] [--base-clients 4] [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from bench.harness import (
    BENCH_REDIS_URL,
    ROOT,
    CpuMeter,
    Load,
    Outcome,
    bench_data_dir,
    cpu_note,
    index,
    photographed_references,
    redis_pid,
    searches_of,
    start_stack,
    table,
    wait_indexed,
    write_result,
)
from bench.rawload import RawLoad
from shared.testing.stack import Stack

DEADLINE_MS = 1000
SHARDS = 8
COLUMNS = [
    ("load", "load"),
    ("clients", "clients"),
    ("goodput_per_second", "good/s"),
    ("goodput_ratio", "x capacity"),
    ("status_text", "statuses"),
    ("ok_ms_p50", "200 p50"),
    ("ok_ms_p99", "200 p99"),
    ("busy_ms_p50", "503 p50"),
    ("busy_ms_p99", "503 p99"),
    ("share_504", "504 share"),
    ("workers_cores", "worker cores"),
    ("api_cores", "api cores"),
    ("redis_cores", "redis cores"),
    ("client_cores", "client cores"),
]


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


def point(outcomes: Sequence[Outcome], seconds: float) -> dict[str, Any]:
    """Goodput (correct 200s within the deadline per second), status mix, latency by status."""
    good = [o for o in outcomes if o.status == 200 and o.found is not False and o.ms <= DEADLINE_MS]
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    return {
        "requests": len(outcomes),
        "seconds": round(seconds, 2),
        "goodput_per_second": round(len(good) / seconds, 1),
        "statuses": dict(sorted(statuses.items())),
        "wrong_200": sum(1 for o in outcomes if o.status == 200 and o.found is False),
        "ok_ms_p50": percentile([o.ms for o in outcomes if o.status == 200], 50),
        "ok_ms_p99": percentile([o.ms for o in outcomes if o.status == 200], 99),
        "busy_ms_p50": percentile([o.ms for o in outcomes if o.status == 503], 50),
        "busy_ms_p99": percentile([o.ms for o in outcomes if o.status == 503], 99),
        "share_504": round(statuses.get("504", 0) / max(len(outcomes), 1), 3),
        "server_ms_p50": percentile([o.server_ms for o in outcomes if o.server_ms is not None], 50),
    }


def front_end_overhead(outcomes: Sequence[Outcome]) -> dict[str, float | None]:
    """At low load: the server's `search_time` against the worker's own time (`Server-Timing`)."""
    pairs = [(o.server_ms, o.worker_ms) for o in outcomes if o.server_ms is not None and o.worker_ms is not None]
    return {
        "search_time_ms_p50": percentile([s for s, _ in pairs], 50),
        "worker_ms_p50": percentile([w for _, w in pairs], 50),
        "search_time_minus_worker_ms_p50": percentile([s - w for s, w in pairs], 50),
    }


def commandstats(db: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in db.info("commandstats").items()}


def commands_per_search(db: redis.Redis, run: Callable[[], list[Outcome]]) -> tuple[list[Outcome], dict[str, Any]]:
    """Runs the load and returns its outcomes with the Redis calls per answered search, by command.

    `INFO` itself is not counted; the searches answered are the 200s (refusals cost Redis a
    fraction of a search and are reported apart, in the status mix)."""
    before = commandstats(db)
    outcomes = run()
    after = commandstats(db)
    answered = max(sum(1 for o in outcomes if o.status == 200), 1)
    calls = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    by_command = {name: round(n / answered, 2) for name, n in sorted(calls.items(), key=lambda kv: -kv[1]) if n}
    return outcomes, {"total": round(sum(calls.values()) / answered, 1), "by_command": by_command}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.overload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--references", type=int, default=20, help="references indexed (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per point (default %(default)s)")
    parser.add_argument("--base-clients", type=int, default=4, help="clients at 1x load (default %(default)s)")
    parser.add_argument("--sequential", type=int, default=200, help="searches of the low-load count")
    parser.add_argument("--redis-url", default=BENCH_REDIS_URL, help="a Redis database the bench flushes")
    parser.add_argument(
        "--client",
        choices=["raw", "httpx"],
        default="raw",
        help="load generator: raw (HTTP/1.1 on asyncio streams, tens of microseconds of CPU a request; the "
        "default) or httpx (about 0.8 ms a request, taken from the cores the stack runs on)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "overload.json")
    return parser.parse_args()


def measure(args: argparse.Namespace, db: redis.Redis, stack: Stack) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Indexes the references, then the low-load run and the 1x, 2x and 10x points; the points and
    the Redis commands per search (low load and 2x)."""
    references = photographed_references(args.references)
    catalogue = asyncio.run(index(stack.url, [r.image for r in references], 1, SHARDS))
    searches = searches_of(catalogue, references)
    wait_indexed(db, catalogue, SHARDS)
    kind = RawLoad if args.client == "raw" else Load

    def load(clients: int, seconds: float, limit: int | None = None, desc: str = "") -> list[Outcome]:
        return kind(stack.url, searches, clients, seconds, limit, timeout=DEADLINE_MS / 1000 + 5, desc=desc).run()

    load(args.base_clients, 3, desc="warm-up")
    sequential, low = commands_per_search(db, lambda: load(1, 600, args.sequential, desc="sequential"))
    low["front_end"] = front_end_overhead(sequential)
    pids = {
        "workers": [w.pid for w in stack.workers],
        "api": [p.pid for p in stack.processes],
        "redis": redis_pid(db),
        "client": [os.getpid()],  # the load generator shares the machine's cores
    }
    points: list[dict[str, Any]] = []
    counts = {"low_load": low}
    for label, factor in (("1x", 1), ("2x", 2), ("10x", 10)):
        clients = args.base_clients * factor
        with CpuMeter(pids) as cpu:
            started = time.monotonic()
            outcomes, counted = commands_per_search(db, functools.partial(load, clients, args.seconds, desc=label))
            figures = point(outcomes, time.monotonic() - started)
        counts[f"at_{label}"] = counted
        cores = {f"{part}_cores": used for part, used in cpu.cores.items()}
        points.append({"load": label, "clients": clients, **figures, **cores})
        tqdm.write(f"{label}: {figures['goodput_per_second']} good/s, {figures['statuses']}")
    return points, counts


def report(points: list[dict[str, Any]], counts: dict[str, Any]) -> None:
    capacity = points[0]["goodput_per_second"]
    for p in points:
        p["goodput_ratio"] = round(p["goodput_per_second"] / capacity, 2) if capacity else 0.0
        p["status_text"] = " ".join(f"{k}:{v}" for k, v in p["statuses"].items())
    print(table(points, COLUMNS))
    low, high = counts["low_load"], counts["at_2x"]
    overhead = low["front_end"]
    print(
        f"low load, sequential: search_time p50 {overhead['search_time_ms_p50']} ms, worker time p50 "
        f"{overhead['worker_ms_p50']} ms, their difference p50 {overhead['search_time_minus_worker_ms_p50']} ms"
    )
    print(f"Redis commands per search: {low['total']} at low load, {high['total']} at 2x")
    for name, per_search in low["by_command"].items():
        print(f"  {name:>20} {per_search:>6} low   {high['by_command'].get(name, 0):>6} at 2x")


def main() -> int:
    args = parse_args()
    db = redis.Redis.from_url(args.redis_url)
    db.flushdb()
    note = cpu_note()
    env = {"RECOG_SHARDS": str(SHARDS), "RECOG_DEADLINE_MS": str(DEADLINE_MS)}
    stack = start_stack(args.redis_url, bench_data_dir("overload"), 2, env=env)
    try:
        points, counts = measure(args, db, stack)
    finally:
        stack.stop()
        db.flushdb()
    report(points, counts)
    write_result(
        args.out,
        {
            "bench": "overload",
            "machine": f"{platform.machine()}, {note}",
            "deadline_ms": DEADLINE_MS,
            "client": args.client,
            "workers": 2,
            "references": args.references,
            "points": [{k: v for k, v in p.items() if k != "status_text"} for p in points],
            "redis_commands_per_search": counts,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
