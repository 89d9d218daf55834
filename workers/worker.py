"""The worker process: load the indexes of the shards it owns, then run RQ jobs in-process: the
searches of those shards, and, when no search waits, reference uploads of any shard.

RQ's default worker forks per job; with an index of gigabytes that costs 25-115 ms a job, while
`SimpleWorker` runs the job in this process against the index already in memory (~2 ms). Three
threads run beside it: one applies index changes from the shards' event streams, one keeps the set
of owned shards in line with the live workers (`workers.ownership`), one heartbeats.

Searches take RQ's loop without RQ's per-job bookkeeping. RQ wraps every job in ~70 Redis commands
(job status and times, the started and finished registries, an execution record, the worker's
state, current job and heartbeat rewritten several times) for jobs whose result is never kept
(`result_ttl=0`) and whose client learns the outcome from its reply key: that capped a Redis core
near 2,000 searches/s. So a search is popped (BLPOP, HGETALL of its hash, as RQ does), run, and
answered in one transaction that also deletes its hash (`workers.jobs`); RQ's worker hash is
refreshed once per `_RQ_BEAT_SECONDS`, the suspension flag read once a second. Uploads take the
same path (`workers.ingest`). A job that names any other function is not run: RQ would call
whatever a job names.

Every worker serves every shard's upload queue, after its search queues (BLPOP takes the first
non-empty list in the order given): uploads need no index, so indexing throughput grows with the
whole pool, and a bulk import only runs on a worker that has no search waiting.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import cv2
import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.job import Job
from rq.worker import WorkerStatus

from shared import migration, replies
from shared.blobs import LocalBlobStore
from shared.codec import INGEST_FUNCTION, SEARCH_FUNCTION, MsgpackSerializer
from shared.config import Settings
from shared.shards import ingest_queue_name, queue_name
from workers import heartbeat, ingest, jobs, metrics, vocabulary
from workers.ownership import ShardManager
from workers.shard_state import ShardState
from workers.snapshots import Snapshots

log = logging.getLogger("recog.worker")

# How long one blocking pop waits before the worker looks again at which queues it should serve.
_LISTEN_SECONDS = 1
# RQ's own worker hash (what `rq info` shows) is refreshed this often, not per job; it expires
# after RQ's worker TTL (420 s), so a live worker never drops out of `rq info`.
_RQ_BEAT_SECONDS = 10.0
_SUSPENSION_CHECK_SECONDS = 1.0
# Most searches an upload lets run at one pause between its stages (so it still makes progress).
_SEARCHES_PER_PAUSE = 8
# The only functions a job may name, and what runs them.
_RUNNERS: dict[str, Callable[[bytes], None]] = {SEARCH_FUNCTION: jobs.search, INGEST_FUNCTION: ingest.ingest}


class ShardWorker(SimpleWorker):
    """An RQ SimpleWorker whose queues follow the shards the ownership manager says it serves."""

    def __init__(self, manager: ShardManager, connection: redis.Redis, name: str, shards: int) -> None:
        self._manager = manager
        self._served: frozenset[int] | None = None
        self._next_rq_beat = 0.0
        self._next_suspension_check = 0.0
        self._busy = False
        super().__init__([], connection=connection, serializer=MsgpackSerializer, name=name)
        self._uploads = [self._queue(ingest_queue_name(s)) for s in range(shards)]

    def _queue(self, name: str) -> Queue:
        return Queue(name, connection=self.connection, serializer=MsgpackSerializer)

    def _follow_ownership(self) -> None:
        wanted = self._manager.listening
        if wanted != self._served:
            self.queues = [self._queue(queue_name(s)) for s in sorted(wanted)] + self._uploads
            self._ordered_queues = self.queues[:]
            self._served = wanted
            self._manager.in_use = wanted
            log.info("listening on shards %s", ",".join(map(str, sorted(wanted))) or "(none)")

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        # Short pops, so a change of owned shards takes effect within a second.
        while not self._stop_requested:
            self._follow_ownership()
            self.heartbeat()
            try:
                popped = Queue.lpop([q.key for q in self._ordered_queues], _LISTEN_SECONDS, connection=self.connection)
            except DequeueTimeout:
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unavailable while waiting for jobs (%s); retrying in 1 s", exc)
                time.sleep(1)
                continue
            queue_key, job_id = (replies.text(part) for part in popped)
            job = self._fetch(job_id)
            if job is not None:
                return job, next(q for q in self._ordered_queues if q.key == queue_key)
        return None

    def serve_waiting_searches(self) -> None:
        """Runs the searches already queued on this worker's shards, up to `_SEARCHES_PER_PAUSE`
        (an upload calls this between its stages, `workers.ingest`); one LMPOP when none waits."""
        search_queues = [q.key for q in self._ordered_queues if q not in self._uploads]
        for _ in range(_SEARCHES_PER_PAUSE if search_queues else 0):
            popped = self.connection.lmpop(len(search_queues), *search_queues, direction="LEFT")
            if not popped:
                return
            for job_id in popped[1]:
                job = self._fetch(replies.text(job_id))
                if job is not None:
                    self._run(job)
                    metrics.SEARCHES_DURING_UPLOADS.inc()

    def _fetch(self, job_id: str) -> Job | None:
        """The job's hash, read as RQ does; None when it expired in the queue (its TTL is its deadline)."""
        try:
            return self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        except NoSuchJobError:
            return None

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._busy = True
        try:
            self._run(job)
        finally:
            self._busy = False

    def _run(self, job: Job) -> None:
        run = _RUNNERS.get(job.func_name or "")
        if run is None:
            # RQ would import and call whatever a job names: anyone able to write to Redis would
            # run code here. The queues carry searches and uploads only.
            log.warning("refused job %s: it calls %r, neither a search nor an upload", job.id, job.func_name)
            self.connection.delete(job.key)
            return
        try:
            run(*job.args)
        except Exception:
            # A job that cannot even be read: nothing to answer, its client will time out.
            log.exception("job %s failed", job.id)
            self.connection.delete(job.key)

    def get_state(self) -> str:
        """BUSY while a job runs, as RQ's state would say (not written to Redis for our jobs): a
        SIGTERM then lets the job finish before the worker stops (RQ's warm shutdown)."""
        return WorkerStatus.BUSY if self._busy else super().get_state()

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's worker-hash heartbeat, at most every `_RQ_BEAT_SECONDS` (RQ calls it around every job)."""
        if pipeline is None and time.monotonic() < self._next_rq_beat:
            return
        self._next_rq_beat = time.monotonic() + _RQ_BEAT_SECONDS
        super().heartbeat(timeout, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's `rq suspend` flag, read at most once a second (RQ reads it before every job)."""
        if time.monotonic() >= self._next_suspension_check:
            self._next_suspension_check = time.monotonic() + _SUSPENSION_CHECK_SECONDS
            super().check_for_suspension(burst)


def worker_name(host: str) -> str:
    """Unique per process; starts with the host so a container's healthcheck finds its own."""
    return f"recog-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def main(settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    connection = redis.Redis.from_url(settings.redis_url)
    name = worker_name(socket.gethostname())
    blobs = LocalBlobStore(settings.data_dir / "blobs")
    state = ShardState(
        connection, blobs, settings.shards, Snapshots(settings.data_dir / "indexes", settings.snapshot_min_images)
    )
    manager = ShardManager(connection, state, name, settings.shards, settings.replicas, settings.worker_shards)
    context = jobs.WorkerContext(
        name=name,
        state=state,
        manager=manager,
        connection=connection,
        reply_ttl_seconds=settings.reply_ttl_seconds,
        shards=settings.shards,
    )
    jobs.CONTEXT = context

    metrics.serve(settings.worker_metrics_port, settings.worker_metrics_host)
    # One worker process is one core's worth of searches (scale with processes, not threads):
    # OpenCV's own thread pool only fights the other workers for the cores (faiss is already
    # single-threaded, see workers/index.py).
    cv2.setNumThreads(1)
    # Built lazily it would land on the first upload's index event: 0.2 s idle, seconds when the
    # machine is busy, which broke the one-second freshness promise (measured).
    vocabulary.quantizer()
    migration.migrate(connection, blobs)  # features kept in Redis by an older version: once per deployment
    stop = threading.Event()
    heartbeat.beat(context)  # be counted among the live workers before shards are shared out
    started = time.perf_counter()
    manager.step()
    log.info(
        "worker %s serves shards %s (%d images) after %.2f s",
        name,
        ",".join(map(str, sorted(manager.listening))) or "(none yet)",
        sum(state.images_per_shard().values()),
        time.perf_counter() - started,
    )
    threads = [
        threading.Thread(target=state.follow, args=(stop,), name="index-events", daemon=True),
        threading.Thread(target=manager.run, args=(stop,), name="ownership", daemon=True),
        threading.Thread(target=heartbeat.run, args=(context, stop), name="heartbeat", daemon=True),
    ]
    for thread in threads:
        thread.start()
    worker = ShardWorker(manager, connection, name, settings.shards)
    ingest.CONTEXT = ingest.IngestContext(
        name=name, connection=connection, blobs=blobs, settings=settings, pause=worker.serve_waiting_searches
    )
    try:
        worker.work(with_scheduler=False, logging_level=settings.log_level)
    finally:
        stop.set()
        heartbeat.forget(context)
        log.info("worker %s stopped after %d searches", name, context.done)
    return 0
