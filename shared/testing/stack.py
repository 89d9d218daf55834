"""A real stack for tests and benches: `recog serve` and `recog worker` processes on a Redis database.

`stack_env` makes the environment (a Redis URL, a data directory, the admin key below, 4 shards),
`start_api` starts the API and returns a `Stack` once it answers, `Stack.start_worker` adds
workers, and `serving` is both with one worker, ready. `wait_converged` waits until shard
ownership has settled on a number of live workers.
"""

from __future__ import annotations

import functools
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import redis

from shared.heartbeats import live_serving
from shared.ownership import owners
from shared.processes import free_port

ADMIN_KEY = "test-admin-key-0123456789"


def recog_command() -> list[str]:
    """The installed `recog` script beside this interpreter, else `python -m shared.cli`."""
    script = Path(sys.executable).with_name("recog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass
class Stack:
    """A running API process and its workers; `url` is where to send requests."""

    url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def client(self, **kwargs: object) -> httpx.Client:
        """A client of the stack's API. They share one TLS context: httpx builds one per client by
        default, ~50 ms of CPU each, which 60 clients of a burst took from the workers (504s)."""
        return httpx.Client(base_url=self.url, timeout=30, verify=_tls(), **kwargs)  # type: ignore[arg-type]

    def admin(self) -> httpx.Client:
        return self.client(headers={"Authorization": f"Bearer {ADMIN_KEY}"})

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*recog_command(), "worker"], env={**self.env, **extra_env})
        self.workers.append(proc)
        return proc

    def stop_workers(self) -> None:
        """Stops every worker (as a deployment scaled to zero would) and forgets them."""
        for proc in self.workers:
            proc.terminate()
            proc.wait(timeout=15)
        self.workers.clear()

    def wait_ready(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the stack did not become ready")

    def stop(self) -> None:
        for proc in [*self.workers, *self.processes]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.workers, *self.processes]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def stack_env(redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its RECOG_* settings, plus the stack's own and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_")}
    env.update(
        REDIS_URL=redis_url,
        RECOG_DATA_DIR=str(data_dir),
        RECOG_ADMIN_API_KEY=ADMIN_KEY,
        RECOG_SHARDS="4",
        RECOG_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def start_api(env: dict[str, str], processes: int = 1) -> Stack:
    """`recog serve` (with `processes` uvicorn processes) on a free port; returns once it answers
    /healthz."""
    port = free_port()
    command = [*recog_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--processes", str(processes)]
    api = subprocess.Popen(command, env=env)
    running = Stack(url=f"http://127.0.0.1:{port}", env=env, processes=[api])
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            httpx.get(f"{running.url}/healthz", timeout=1)
            return running
        except httpx.HTTPError:
            time.sleep(0.1)
    running.stop()
    raise RuntimeError("the API process did not answer /healthz within 30 s")


@contextmanager
def serving(env: dict[str, str], processes: int = 1) -> Iterator[Stack]:
    """The API and one worker, ready (every shard has a live worker); stopped on exit."""
    running = start_api(env, processes)
    try:
        running.start_worker()
        running.wait_ready()
        yield running
    finally:
        running.stop()


@contextmanager
def private_db(redis_url: str, db: int) -> Iterator[redis.Redis]:
    """Database `db` of the Redis at `redis_url`, empty before and after (tests that must not see
    each other's jobs, or the main stack's worker, use one of their own)."""
    connection = redis.Redis.from_url(with_db(redis_url, db))
    connection.flushdb()
    try:
        yield connection
    finally:
        connection.flushdb()
        connection.close()


def with_db(redis_url: str, db: int) -> str:
    """`redis_url` with database `db`: its user, password and query kept."""
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{db}"))


def db_url(connection: redis.Redis) -> str:
    """The URL of the database `connection` uses, with its user and password when it has them."""
    kwargs = connection.connection_pool.connection_kwargs
    user, password = kwargs.get("username") or "", kwargs.get("password")
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def converged(db: redis.Redis, workers: int, shards: int, replicas: int) -> bool:
    """Every shard is served by exactly the owners rendezvous hashing picks among `workers` live ones."""
    live = live_serving(db)
    if len(live) != workers:
        return False
    return all(
        {w for w, served in live.items() if s in served} == set(owners(s, live, replicas)) for s in range(shards)
    )


def wait_converged(db: redis.Redis, workers: int, shards: int, replicas: int, timeout: float) -> float:
    """Seconds until `converged`; raises RuntimeError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if converged(db, workers, shards, replicas):
            return time.monotonic() - started
        time.sleep(0.05)
    raise RuntimeError(f"shards did not settle on {workers} workers within {timeout} s: {live_serving(db)}")
