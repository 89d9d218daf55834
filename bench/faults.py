"""What searches get while workers join and die under load.

One cluster (an API process, two workers, `--shards` shards with `--replicas` workers each) on its
own Redis database; references indexed into `--collections` collections, each on a shard of its
own. A closed loop of `--concurrency` async httpx clients searches photos of them all along, with a
client timeout well past the deadline so a request left hanging is seen, not cut off. Phases:

  baseline  `--baseline` seconds on 2 workers;
  join      a third worker starts (2 -> 3): failed requests while its shards move (goal 0);
  kill      kill -9 one of the 3 workers: requests answered 200 / 503 / 504 / other, seconds until
            shard ownership has converged on the 2 survivors (goal <= 10 s), and requests left
            without an answer past their deadline, i.e. client latency > deadline + 1 s (goal 0).

Each phase lasts until ownership has converged, plus `--settle` seconds. Prints a table and writes
bench/results/faults.json.

    .venv/bin/python -m bench.faults [--concurrency 6] [--deadline-ms 3000] [--baseline 5] [--settle 3]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import signal
import time
from pathlib import Path
from typing import Any

import redis
from rq.registry import StartedJobRegistry
from tqdm import tqdm

from bench.harness import (
    BENCH_REDIS_URL,
    ROOT,
    Load,
    Outcome,
    bench_data_dir,
    cpu_note,
    index,
    photographed_references,
    searches_of,
    start_stack,
    table,
    wait_indexed,
    write_result,
)
from shared.codec import MsgpackSerializer
from shared.shards import queue_name
from shared.testing.stack import wait_converged

COLUMNS = [
    ("phase", "phase"),
    ("requests", "requests"),
    ("ok", "200"),
    ("wrong", "200 wrong item"),
    ("busy", "503"),
    ("timeout", "504"),
    ("other", "other"),
    ("failed", "failed"),
    ("hanging", "past deadline+1s"),
    ("latency_ms_max", "max ms"),
    ("converged_s", "converged s"),
]


def phase(
    name: str, outcomes: list[Outcome], start: float, end: float, deadline_s: float, event_at: float | None
) -> dict[str, Any]:
    """Counts for the requests answered in [start, end): a request a dying worker had taken is
    answered (504) after the kill, so it counts there."""
    sent = [o for o in outcomes if start <= o.answered < end]
    failures = [o for o in sent if o.status != 200]
    row: dict[str, Any] = {
        "phase": name,
        "requests": len(sent),
        "ok": sum(o.status == 200 for o in sent),
        "wrong": sum(o.status == 200 and o.found is False for o in sent),
        "busy": sum(o.status == 503 for o in sent),
        "timeout": sum(o.status == 504 for o in sent),
        "other": sum(o.status not in (200, 503, 504) for o in sent),
        "failed": len(failures),
        "hanging": sum(o.ms > (deadline_s + 1) * 1000 for o in sent),
        "latency_ms_max": round(max((o.ms for o in sent), default=0.0), 1),
    }
    if event_at is not None and failures:
        # When the failures happened, from the event (join or kill), by when they were answered.
        row["failures_answered_s_after_event"] = [
            round(min(o.answered for o in failures) - event_at, 2),
            round(max(o.answered for o in failures) - event_at, 2),
        ]
        row["failure_latency_ms"] = sorted(round(o.ms) for o in failures)[:20]
    return row


def started_jobs(db: redis.Redis, shards: int) -> int:
    """Jobs RQ still counts as being worked on, over all shard queues (a dead worker's stay there)."""
    return sum(
        len(StartedJobRegistry(queue_name(s), connection=db, serializer=MsgpackSerializer).get_job_ids(cleanup=False))
        for s in range(shards)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--references", type=int, default=120, help="references indexed (default %(default)s)")
    parser.add_argument(
        "--collections", type=int, default=8, help="collections the references are spread over (default %(default)s)"
    )
    parser.add_argument("--shards", type=int, default=8, help="RECOG_SHARDS (default %(default)s)")
    parser.add_argument("--replicas", type=int, default=2, help="RECOG_REPLICAS (default %(default)s)")
    parser.add_argument("--deadline-ms", type=int, default=3000, help="RECOG_DEADLINE_MS (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=6, help="clients in the closed loop (default %(default)s)")
    parser.add_argument(
        "--baseline", type=float, default=5, help="seconds of load before the join (default %(default)s)"
    )
    parser.add_argument(
        "--settle", type=float, default=3, help="seconds of load after each convergence (default %(default)s)"
    )
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=60,
        help="give up waiting for convergence after (default %(default)s s)",
    )
    parser.add_argument("--seed", type=int, default=None, help="picks the worker to kill (default: random)")
    parser.add_argument(
        "--redis-url", default=BENCH_REDIS_URL, help="a Redis database the bench flushes (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "faults.json")
    args = parser.parse_args()

    db = redis.Redis.from_url(args.redis_url)
    db.flushdb()
    note = cpu_note()
    deadline_s = args.deadline_ms / 1000
    env = {
        "RECOG_SHARDS": str(args.shards),
        "RECOG_REPLICAS": str(args.replicas),
        "RECOG_DEADLINE_MS": str(args.deadline_ms),
    }
    stack = start_stack(args.redis_url, bench_data_dir("faults"), 2, env=env)
    marks: dict[str, float] = {}
    try:
        references = photographed_references(args.references)
        catalogue = asyncio.run(index(stack.url, [r.image for r in references], args.collections, args.shards))
        wait_converged(db, 2, args.shards, args.replicas, args.converge_timeout)
        wait_indexed(db, catalogue, args.shards)
        # A day of seconds: the load ends when told to; the client timeout shows hanging requests.
        load = Load(
            stack.url,
            searches_of(catalogue, references),
            args.concurrency,
            86_400,
            timeout=deadline_s + 30,
            desc="load",
        )
        thread = load.in_thread()
        try:
            marks["baseline"] = time.monotonic()
            time.sleep(args.baseline)

            marks["join"] = time.monotonic()
            stack.start_worker()
            joined = wait_converged(db, 3, args.shards, args.replicas, args.converge_timeout)
            tqdm.write(f"join: ownership converged on 3 workers {joined:.1f} s after the start")
            time.sleep(args.settle)

            victim = random.Random(args.seed).choice(stack.workers)
            jobs_before = started_jobs(db, args.shards)
            marks["kill"] = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            recovered = wait_converged(db, 2, args.shards, args.replicas, args.converge_timeout)
            tqdm.write(f"kill -9 pid {victim.pid}: ownership converged on 2 workers {recovered:.1f} s later")
            time.sleep(args.settle)
        finally:
            load.stop.set()
            thread.join()
            marks["end"] = time.monotonic()
        time.sleep(0.5)  # the survivors finish the last jobs of the stopped load
        orphaned = started_jobs(db, args.shards)
    finally:
        stack.stop()
        db.flushdb()

    outcomes = load.outcomes
    rows = [
        phase("baseline (2 workers)", outcomes, marks["baseline"], marks["join"], deadline_s, None),
        {
            **phase("join (2 -> 3)", outcomes, marks["join"], marks["kill"], deadline_s, marks["join"]),
            "converged_s": round(joined, 2),
        },
        {
            **phase("kill -9 (3 -> 2)", outcomes, marks["kill"], marks["end"], deadline_s, marks["kill"]),
            "converged_s": round(recovered, 2),
        },
    ]
    print(table(rows, COLUMNS))
    kill = rows[2]
    print(
        f"kill: shards served by the 2 survivors as rendezvous hashing wants {recovered:.1f} s after the kill (goal <= 10 s); "
        f"{kill['failed']} failed request(s) ({kill['busy']} x 503, {kill['timeout']} x 504, {kill['other']} other); "
        f"{kill['hanging']} left unanswered past deadline + 1 s (goal 0)"
    )
    print(f"join: {rows[1]['failed']} failed request(s) while shards moved to the new worker (goal 0)")
    print(
        f"RQ started-job registries: {jobs_before} job(s) just before the kill, {orphaned} after recovery "
        "after the load stopped (what is left there was taken by the killed worker and never answered)"
    )
    result = {
        "bench": "faults",
        "machine": f"{platform.machine()}, {note}",
        "references": args.references,
        "collections": args.collections,
        "shards": args.shards,
        "replicas": args.replicas,
        "deadline_ms": args.deadline_ms,
        "concurrency": args.concurrency,
        "join_converged_s": round(joined, 2),
        "kill_converged_s": round(recovered, 2),
        "started_jobs_before_kill": jobs_before,
        "started_jobs_after_recovery": orphaned,
        "phases": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
