"""Front-end overhead: searches per second one API process handles, and the latency it adds.

The worker is a stub that answers at once (no RQ worker, no recognition): it BLPOPs the shard queues'
keys, fetches each job with rq's `Job.fetch` (msgpack serializer), decodes the `SearchJob` and
RPUSHes an empty `SearchReply` to its reply key, and heartbeats as serving every shard so admission
lets searches through. So what is measured is the front end: multipart parsing, token check, image
header check, admission, RQ enqueue, the BLPOP for the reply, plus the stub's own Redis round trips.

The load client is `wrk` (a C client, one thread, a Lua script posting a multipart search with a
real photo) when installed, else async httpx. Measured, each for `--seconds`:

  1. latency, one connection: /healthz (a bare round trip through uvicorn and Starlette) and
     /v1/search. Added latency = median(/v1/search) - median(/healthz): everything a search adds to
     a bare request (upload and form parsing included, worker time included: the stub's own median
     is reported beside it);
  2. throughput, `--connections` connections: /healthz (the client's and uvicorn's ceiling) and
     /v1/search (the front end's), with the CPU each process used, to say which side is the limit;
  3. the httpx client's own ceiling against /healthz;
  4. the floor: the same search requests against a bare Starlette endpoint (`bench.bare_app`: the
     same multipart form read, one Redis round trip) under the same uvicorn, one process; the
     front end's rate and CPU per search are reported as ratios to it.

Prints a table and writes bench/results/frontend.json.

    .venv/bin/python -m bench.frontend [--seconds 8] [--connections 64] [--processes 1] [--stubs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue
from rq.job import Job
from tqdm import tqdm

from bench.harness import (
    BENCH_REDIS_URL,
    ROOT,
    CpuMeter,
    bench_data_dir,
    cpu_note,
    query_images,
    redis_pid,
    start_stack,
    table,
    write_result,
)
from shared import keys
from shared.codec import MsgpackSerializer, SearchReply, decode_job
from shared.processes import free_port
from shared.shards import queue_name
from shared.testing.stack import ADMIN_KEY
from shared.testing.wait import wait_until
from workers.jobs import finish

SHARDS = 4
# wrk's Lua side: count statuses per thread, sum them at the end and print one JSON line.
_WRK_REPORT = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  local counts, parts = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do counts[k] = (counts[k] or 0) + v end
  end
  for k, v in pairs(counts) do table.insert(parts, string.format('"%d": %d', k, v)) end
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "socket_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "statuses": {%s}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ", ")))
end
"""
_WRK_MULTIPART = """
local f = assert(io.open(%(image)s, "rb")); local image = f:read("*a"); f:close()
local b = "recog-bench-boundary-7d93"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
wrk.body = "--" .. b .. '\\r\\nContent-Disposition: form-data; name="token"\\r\\n\\r\\n' .. %(token)s .. "\\r\\n"
  .. "--" .. b .. '\\r\\nContent-Disposition: form-data; name="image"; filename="q.jpg"\\r\\n'
  .. 'Content-Type: image/jpeg\\r\\n\\r\\n'
  .. image .. "\\r\\n--" .. b .. "--\\r\\n"
"""


# --- the stub worker (a process of its own: `python -m bench.frontend --stub-worker URL STATS`) ----


def stub_worker(redis_url: str, stats_path: Path) -> None:
    connection = redis.Redis.from_url(redis_url)
    queue_keys = [Queue(queue_name(s), connection=connection, serializer=MsgpackSerializer).key for s in range(SHARDS)]
    name = f"bench-stub-{os.getpid()}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def heartbeat() -> None:
        while not stop.is_set():
            with connection.pipeline(transaction=True) as pipe:
                pipe.hset(
                    keys.worker(name),
                    mapping={"name": name, "pid": os.getpid(), "shards": ",".join(map(str, range(SHARDS)))},
                )
                pipe.expire(keys.worker(name), 30)
                pipe.zadd(keys.WORKERS, {name: time.time()})
                pipe.execute()
            stop.wait(1)

    threading.Thread(target=heartbeat, daemon=True).start()
    spent: list[float] = []
    while not stop.is_set():
        popped = connection.blpop(queue_keys, timeout=1)
        if popped is None:
            continue
        started = time.perf_counter()
        job_id = popped[1].decode() if isinstance(popped[1], bytes) else popped[1]
        job = decode_job(Job.fetch(job_id, connection=connection, serializer=MsgpackSerializer).args[0])
        finish(connection, SHARDS, 30, job, SearchReply(job_id=job.job_id, worker=name))
        spent.append((time.perf_counter() - started) * 1000)
    connection.zrem(keys.WORKERS, name)
    connection.delete(keys.worker(name))
    stats_path.write_text(
        json.dumps({"jobs": len(spent), "ms_p50": round(statistics.median(spent), 3) if spent else None})
    )


# --- clients --------------------------------------------------------------------------------------


def wrk(
    url: str, script: Path, seconds: float, connections: int, threads: int, meter_pids: dict[str, list[int]]
) -> dict[str, Any]:
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    with CpuMeter({**meter_pids, "client": [proc.pid]}) as cpu:
        out, _ = proc.communicate()
        wall = time.monotonic() - cpu.started
    # wrk is gone (and reaped) before the meter reads /proc, so its CPU comes from the children's rusage.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.cpu_seconds["client"] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    cpu.cores["client"] = round(cpu.cpu_seconds["client"] / wall, 2)
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report:\n{out}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "requests": raw["requests"],
        "per_second": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "latency_ms_p50": raw["p50_us"] / 1000,
        "latency_ms_p99": raw["p99_us"] / 1000,
        "statuses": raw["statuses"],
        "socket_errors": raw["socket_errors"],
        "cores": cpu.cores,
        "cpu_seconds": cpu.cpu_seconds,
        "machine_busy": cpu.machine_busy,
    }


async def _httpx_run(
    url: str, path: str, seconds: float, concurrency: int, files: dict[str, Any] | None, data: dict[str, str] | None
) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    end = time.monotonic() + seconds

    async def loop() -> None:
        # A client per connection: one client shared by many concurrent requests is far slower
        # (its connection pool's bookkeeping grows with the requests waiting on it).
        async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=1)) as client:
            while time.monotonic() < end:
                started = time.perf_counter()
                if files is None:
                    response = await client.get(path)
                else:
                    response = await client.post(path, data=data, files=files)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies, statuses


def httpx_client(
    url: str,
    path: str,
    seconds: float,
    concurrency: int,
    meter_pids: dict[str, list[int]],
    token: str = "",
    image: bytes = b"",
) -> dict[str, Any]:
    files = {"image": ("q.jpg", image, "image/jpeg")} if image else None
    with CpuMeter({**meter_pids, "client": [os.getpid()]}) as cpu:
        started = time.monotonic()
        latencies, statuses = asyncio.run(
            _httpx_run(url, path, seconds, concurrency, files, {"token": token} if image else None)
        )
        elapsed = time.monotonic() - started
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(statistics.median(latencies), 3),
        "latency_ms_p99": round(statistics.quantiles(latencies, n=100)[98], 3) if len(latencies) > 1 else None,
        "statuses": statuses,
        "cores": cpu.cores,
        "cpu_seconds": cpu.cpu_seconds,
        "machine_busy": cpu.machine_busy,
    }


def descendants(pid: int) -> list[int]:
    """The process and its children (uvicorn `--processes N` runs N children)."""
    found = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += descendants(int(child))
    except OSError:
        pass
    return found


# --- the bench ------------------------------------------------------------------------------------


COLUMNS = [
    ("run", "run"),
    ("client", "client"),
    ("per_second", "req/s"),
    ("p50", "p50 ms"),
    ("p99", "p99 ms"),
    ("statuses", "statuses"),
    ("api", "api cores"),
    ("stub", "stub cores"),
    ("redis", "redis cores"),
    ("client_cores", "client cores"),
    ("machine", "machine busy"),
    ("api_cpu_ms", "api CPU ms/req"),
]
DEFINITION = (
    "added latency = median latency of /v1/search with an instant stub worker minus median latency of "
    "GET /healthz, both over one keep-alive connection on loopback"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.frontend", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=8, help="seconds per measurement (default %(default)s; 5 of them)"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="connections for the throughput runs (default %(default)s)"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="API processes (`recog serve --processes`, default %(default)s)"
    )
    parser.add_argument("--stubs", type=int, default=1, help="stub worker processes (default %(default)s)")
    parser.add_argument(
        "--client",
        choices=["wrk", "httpx"],
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load client for the measurements (default: wrk when installed)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default %(default)s)")
    parser.add_argument(
        "--redis-url", default=BENCH_REDIS_URL, help="a Redis database the bench flushes (default %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "frontend.json")
    parser.add_argument("--stub-worker", nargs=2, metavar=("REDIS_URL", "STATS"), help=argparse.SUPPRESS)
    return parser.parse_args()


def start_stubs(redis_url: str, count: int, work: Path) -> list[subprocess.Popen[bytes]]:
    """`count` stub workers, each writing its figures to `work/stub-N.json` when it stops."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "bench.frontend", "--stub-worker", redis_url, str(work / f"stub-{n}.json")],
            cwd=ROOT,
        )
        for n in range(count)
    ]


def stop_stubs(stubs: list[subprocess.Popen[bytes]]) -> None:
    for stub in stubs:
        stub.terminate()
    for stub in stubs:
        stub.wait(timeout=10)


def collection_token(url: str) -> str:
    """The token of a new, empty collection (the stub answers every search with no result)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as admin:
        created = admin.post("/api/v0/collection/", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
        tokens = admin.get("/api/v0/token/", params={"collection__uuid": created.json()["uuid"]})
    return str(tokens.json()["objects"][0]["token"])


def wrk_scripts(work: Path, image: bytes, token: str) -> dict[str, Path]:
    """wrk's Lua scripts in `work`: a bare GET /healthz, and a multipart search with `image`."""
    (work / "q.jpg").write_bytes(image)
    scripts = {"healthz": work / "healthz.lua", "search": work / "search.lua"}
    scripts["healthz"].write_text(_WRK_REPORT)
    scripts["search"].write_text(
        _WRK_MULTIPART % {"image": json.dumps(str(work / "q.jpg")), "token": json.dumps(token)} + _WRK_REPORT
    )
    return scripts


def measure(
    args: argparse.Namespace, url: str, pids: dict[str, list[int]], work: Path, token: str, image: bytes
) -> dict[str, dict[str, Any]]:
    """/healthz and /v1/search on one connection and on `--connections`, with the chosen client,
    then the httpx client's own ceiling on /healthz."""
    scripts = wrk_scripts(work, image, token) if args.client == "wrk" else {}
    paths = {"healthz": "/healthz", "search": "/v1/search"}
    plan = [(f"{kind} x{conns}", kind, conns) for conns in (1, args.connections) for kind in ("healthz", "search")]
    runs: dict[str, dict[str, Any]] = {}
    for label, kind, conns in tqdm(plan, desc="measurements", unit="run"):
        if args.client == "wrk":
            threads = min(args.wrk_threads, conns)
            runs[label] = wrk(url + paths[kind], scripts[kind], args.seconds, conns, threads, pids)
        else:
            query = image if kind == "search" else b""
            runs[label] = httpx_client(url, paths[kind], args.seconds, conns, pids, token, query)
        runs[label]["client"] = args.client
    runs[f"healthz x{args.connections} (httpx ceiling)"] = {
        **httpx_client(url, "/healthz", args.seconds, args.connections, pids),
        "client": "httpx",
    }
    return runs


def run_bench(
    args: argparse.Namespace, db: redis.Redis, work: Path, image: bytes
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Starts the API and the stub workers, measures, stops them, then measures the bare endpoint;
    the runs and the stubs' own figures."""
    stack = start_stack(args.redis_url, bench_data_dir("frontend"), 0, args.processes, {"RECOG_SHARDS": str(SHARDS)})
    stubs = start_stubs(args.redis_url, args.stubs, work)
    try:
        stack.wait_ready(timeout=30)
        token = collection_token(stack.url)
        pids = {"api": descendants(stack.processes[0].pid), "stub": [s.pid for s in stubs], "redis": redis_pid(db)}
        runs = measure(args, stack.url, pids, work, token, image)
    finally:
        stop_stubs(stubs)
        stack.stop()
        db.flushdb()
    runs.update(measure_bare(args, db, work, token, image))
    return runs, [json.loads(p.read_text()) for p in sorted(work.glob("stub-*.json"))]


def measure_bare(
    args: argparse.Namespace, db: redis.Redis, work: Path, token: str, image: bytes
) -> dict[str, dict[str, Any]]:
    """The same search requests against `bench.bare_app` under the same uvicorn, one process."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.bare_app:create_app", "--factory", "--port", str(port)]
    bare = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "REDIS_URL": args.redis_url}, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 30, "the bare endpoint answers")
        pids = {"api": [bare.pid], "stub": [], "redis": redis_pid(db)}
        runs: dict[str, dict[str, Any]] = {}
        for conns in (1, args.connections):
            if args.client == "wrk":
                script = wrk_scripts(work, image, token)["search"]
                run = wrk(url + "/v1/search", script, args.seconds, conns, min(args.wrk_threads, conns), pids)
            else:
                run = httpx_client(url, "/v1/search", args.seconds, conns, pids, token, image)
            runs[f"bare search x{conns}"] = {**run, "client": args.client}
        return runs
    finally:
        bare.terminate()
        bare.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def row(label: str, run: dict[str, Any]) -> dict[str, Any]:
    """One line of the table: a run's rate, latency, statuses and the cores each process used."""
    cores = run["cores"]
    return {
        "run": label,
        "client": run["client"],
        "per_second": run["per_second"],
        "p50": run["latency_ms_p50"],
        "p99": run["latency_ms_p99"],
        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(run["statuses"].items())),
        "api": cores["api"],
        "stub": cores["stub"],
        "redis": cores["redis"],
        "client_cores": cores["client"],
        "machine": run["machine_busy"],
        "api_cpu_ms": round(run["cpu_seconds"]["api"] * 1000 / run["requests"], 3) if run["requests"] else None,
    }


@dataclass(frozen=True)
class Figures:
    """The headline figures, from the runs: what the summary lines and the JSON report say."""

    per_process: float  # searches per second per API process, at `--connections`
    api_ms: float  # API CPU ms per search, at `--connections`
    bare_per_second: float  # the bare endpoint's requests per second, at `--connections`
    bare_ms: float  # the bare endpoint's CPU ms per request, at `--connections`
    added: float  # median /v1/search minus median /healthz, one connection, ms
    stub_ms: float | None  # the first stub's median ms per job


def figures(runs: dict[str, dict[str, Any]], args: argparse.Namespace, stub_stats: list[dict[str, Any]]) -> Figures:
    search, bare = runs[f"search x{args.connections}"], runs[f"bare search x{args.connections}"]
    return Figures(
        per_process=search["per_second"] / args.processes,
        api_ms=search["cpu_seconds"]["api"] * 1000 / max(search["requests"], 1),
        bare_per_second=bare["per_second"],
        bare_ms=bare["cpu_seconds"]["api"] * 1000 / max(bare["requests"], 1),
        added=runs["search x1"]["latency_ms_p50"] - runs["healthz x1"]["latency_ms_p50"],
        stub_ms=stub_stats[0]["ms_p50"] if stub_stats else None,
    )


def summary_lines(runs: dict[str, dict[str, Any]], args: argparse.Namespace, found: Figures) -> list[str]:
    search = runs[f"search x{args.connections}"]
    one_search, one_healthz = runs["search x1"]["latency_ms_p50"], runs["healthz x1"]["latency_ms_p50"]
    return [
        f"searches per second per API process: {found.per_process:.0f} (goal >= 1,500); the API process used "
        f"{search['cores']['api']:.2f} cores for it, {found.api_ms:.2f} CPU ms per search (goal <= 0.6), i.e. at "
        f"most {1000 / found.api_ms:.0f} searches/s per fully busy core"
        if found.api_ms
        else "no searches measured",
        f"against a bare Starlette endpoint (same form, one Redis round trip) in the same run: "
        f"{found.bare_per_second:.0f} requests/s at {found.bare_ms:.2f} CPU ms; ratio of rates "
        f"{found.per_process / found.bare_per_second:.2f}, of CPU per request {found.api_ms / found.bare_ms:.2f}",
        f"added latency per search: {found.added:.2f} ms = median /v1/search {one_search:.2f} ms"
        f" - median /healthz {one_healthz:.2f} ms, one connection; the stub's own median per job: {found.stub_ms} ms",
        f"whole machine busy during the search run: {search['machine_busy']:.0%} "
        f"({os.cpu_count()} cores, other processes included)",
    ]


def main() -> int:
    args = parse_args()
    if args.stub_worker:
        stub_worker(args.stub_worker[0], Path(args.stub_worker[1]))
        return 0

    db = redis.Redis.from_url(args.redis_url)
    db.flushdb()
    note = cpu_note()
    work = Path(tempfile.mkdtemp(prefix="recog-frontend-"))
    image = query_images()[2]
    try:
        runs, stub_stats = run_bench(args, db, work, image)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(table([row(label, run) for label, run in runs.items()], COLUMNS))
    found = figures(runs, args, stub_stats)
    lines = summary_lines(runs, args, found)
    print("\n".join(lines))
    result = {
        "bench": "frontend",
        "machine": f"{platform.machine()}, {note}",
        "processes": args.processes,
        "stubs": args.stubs,
        "connections": args.connections,
        "seconds": args.seconds,
        "client": args.client,
        "query_bytes": len(image),
        "definition": DEFINITION,
        "searches_per_second_per_process": round(found.per_process, 1),
        "api_cpu_ms_per_search": round(found.api_ms, 3),
        "bare_requests_per_second": found.bare_per_second,
        "bare_cpu_ms_per_request": round(found.bare_ms, 3),
        "rate_ratio_to_bare": round(found.per_process / found.bare_per_second, 2),
        "cpu_ratio_to_bare": round(found.api_ms / found.bare_ms, 2),
        "added_latency_ms": round(found.added, 3),
        "stub_ms_per_job_p50": found.stub_ms,
        "stub_jobs": [s["jobs"] for s in stub_stats],
        "runs": runs,
        "summary": lines,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
