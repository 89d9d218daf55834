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
from dataclasses import dataclass, field
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
    Search,
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
from shared.testing.stack import Stack, wait_converged

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


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


@dataclass
class Run:
    """What a run recorded: every request's outcome, when each phase began (and the load ended),
    seconds to convergence after the join and the kill, and RQ's started-job counts."""

    outcomes: list[Outcome]
    marks: dict[str, float] = field(default_factory=dict)
    joined: float = 0.0
    recovered: float = 0.0
    jobs_before: int = 0
    orphaned: int = 0


def join(args: argparse.Namespace, stack: Stack, db: redis.Redis, run: Run) -> None:
    """A third worker starts; waits until ownership has converged on 3, then `--settle` seconds."""
    run.marks["join"] = time.monotonic()
    stack.start_worker()
    run.joined = wait_converged(db, 3, args.shards, args.replicas, args.converge_timeout)
    tqdm.write(f"join: ownership converged on 3 workers {run.joined:.1f} s after the start")
    time.sleep(args.settle)


def kill(args: argparse.Namespace, stack: Stack, db: redis.Redis, run: Run) -> None:
    """kill -9 of a worker picked by `--seed`; waits until ownership has converged on the 2 survivors,
    then `--settle` seconds."""
    victim = random.Random(args.seed).choice(stack.workers)
    run.jobs_before = started_jobs(db, args.shards)
    run.marks["kill"] = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    run.recovered = wait_converged(db, 2, args.shards, args.replicas, args.converge_timeout)
    tqdm.write(f"kill -9 pid {victim.pid}: ownership converged on 2 workers {run.recovered:.1f} s later")
    time.sleep(args.settle)


def under_load(args: argparse.Namespace, stack: Stack, db: redis.Redis, searches: list[Search]) -> Run:
    """The baseline, join and kill phases while a closed loop of clients searches all along."""
    # A day of seconds: the load ends when told to; the client timeout shows hanging requests.
    load = Load(stack.url, searches, args.concurrency, 86_400, timeout=args.deadline_ms / 1000 + 30, desc="load")
    run = Run(load.outcomes)
    thread = load.in_thread()
    try:
        run.marks["baseline"] = time.monotonic()
        time.sleep(args.baseline)
        join(args, stack, db, run)
        kill(args, stack, db, run)
    finally:
        load.stop.set()
        thread.join()
        run.marks["end"] = time.monotonic()
    return run


def run_bench(args: argparse.Namespace, db: redis.Redis) -> Run:
    """Starts the cluster on 2 workers, indexes the references, runs the phases, stops the cluster."""
    env = {
        "RECOG_SHARDS": str(args.shards),
        "RECOG_REPLICAS": str(args.replicas),
        "RECOG_DEADLINE_MS": str(args.deadline_ms),
    }
    stack = start_stack(args.redis_url, bench_data_dir("faults"), 2, env=env)
    try:
        references = photographed_references(args.references)
        catalogue = asyncio.run(index(stack.url, [r.image for r in references], args.collections, args.shards))
        wait_converged(db, 2, args.shards, args.replicas, args.converge_timeout)
        wait_indexed(db, catalogue, args.shards)
        run = under_load(args, stack, db, searches_of(catalogue, references))
        time.sleep(0.5)  # the survivors finish the last jobs of the stopped load
        run.orphaned = started_jobs(db, args.shards)
    finally:
        stack.stop()
        db.flushdb()
    return run


def phase_rows(run: Run, deadline_s: float) -> list[dict[str, Any]]:
    """One table row per phase, each over the requests answered while it lasted."""
    marks = run.marks
    return [
        phase("baseline (2 workers)", run.outcomes, marks["baseline"], marks["join"], deadline_s, None),
        {
            **phase("join (2 -> 3)", run.outcomes, marks["join"], marks["kill"], deadline_s, marks["join"]),
            "converged_s": round(run.joined, 2),
        },
        {
            **phase("kill -9 (3 -> 2)", run.outcomes, marks["kill"], marks["end"], deadline_s, marks["kill"]),
            "converged_s": round(run.recovered, 2),
        },
    ]


def print_summary(rows: list[dict[str, Any]], run: Run) -> None:
    kill = rows[2]
    print(
        f"kill: shards served by the 2 survivors as rendezvous hashing wants {run.recovered:.1f} s after the kill "
        f"(goal <= 10 s); {kill['failed']} failed request(s) ({kill['busy']} x 503, {kill['timeout']} x 504, "
        f"{kill['other']} other); {kill['hanging']} left unanswered past deadline + 1 s (goal 0)"
    )
    print(f"join: {rows[1]['failed']} failed request(s) while shards moved to the new worker (goal 0)")
    print(
        f"RQ started-job registries: {run.jobs_before} job(s) just before the kill, {run.orphaned} after recovery "
        "after the load stopped (what is left there was taken by the killed worker and never answered)"
    )


def main() -> int:
    args = parse_args()
    db = redis.Redis.from_url(args.redis_url)
    db.flushdb()
    note = cpu_note()
    run = run_bench(args, db)
    rows = phase_rows(run, args.deadline_ms / 1000)
    print(table(rows, COLUMNS))
    print_summary(rows, run)
    result = {
        "bench": "faults",
        "machine": f"{platform.machine()}, {note}",
        "references": args.references,
        "collections": args.collections,
        "shards": args.shards,
        "replicas": args.replicas,
        "deadline_ms": args.deadline_ms,
        "concurrency": args.concurrency,
        "join_converged_s": round(run.joined, 2),
        "kill_converged_s": round(run.recovered, 2),
        "started_jobs_before_kill": run.jobs_before,
        "started_jobs_after_recovery": run.orphaned,
        "phases": rows,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
