"""`recog up` keeps the whole stack running: a part killed with -9 (the API, the private Redis, a
worker) is started again, and the stack answers again, without anyone restarting `recog up`. Its
private Redis has a password that it keeps and never shows. Commands in another shell find it by its
record; a busy port stops it before it starts anything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from shared import stackfile
from shared.processes import free_port
from shared.testing.stack import recog_command
from shared.testing.wait import wait_until

BANNER = b"recog is up"


def children(pid: int) -> dict[int, str]:
    """The direct children of `pid`, with their command lines."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            found[int(child)] = cmdline
    return found


def child_running(up: subprocess.Popen[bytes], needle: str) -> int | None:
    """The pid of `up`'s child whose command line holds `needle`, if one runs."""
    return next((pid for pid, cmdline in children(up.pid).items() if needle in cmdline), None)


def answers(url: str, path: str) -> bool:
    try:
        return httpx.get(url + path, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def recog_up(data_dir: Path, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`recog up` with one worker on `data_dir`, its output appended to `log`, once it says the stack
    is up; stopped with SIGINT (Ctrl-C) on exit."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    env.update(RECOG_DATA_DIR=str(data_dir), RECOG_SHARDS="2")
    announced = log.read_bytes().count(BANNER) if log.exists() else 0  # by earlier runs
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*recog_command(), "up", "--workers", "1", "--port", str(port)], env=env, stdout=output, stderr=output
        )
    try:
        # Before it says so, `recog up` takes an exit for a failed start (a busy port, say) and stops.
        wait_until(lambda: log.read_bytes().count(BANNER) > announced, 90, "recog up says the stack is up")
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with recog_up(tmp_path / "data", tmp_path / "up.log") as (process, url):
        wait_until(lambda: answers(url, "/readyz"), 90, "the stack is ready")
        yield process, url


def test_killed_parts_are_started_again(up: tuple[subprocess.Popen[bytes], str]) -> None:
    process, url = up
    for part in ("shared.cli serve", "redis-server", "shared.cli worker"):
        victim = child_running(process, part)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda p=part, v=victim: child_running(process, p) not in (None, v), 15, f"{part} is started again")
        wait_until(lambda: answers(url, "/readyz"), 30, f"the stack is ready again after killing {part}")
    assert process.poll() is None


def commands_env(data_dir: Path) -> dict[str, str]:
    """A second shell's environment: no REDIS_URL, no RECOG_* settings but the data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    return {**env, "RECOG_DATA_DIR": str(data_dir)}


def test_commands_in_another_shell_find_the_stack(up: tuple[subprocess.Popen[bytes], str], tmp_path: Path) -> None:
    process, url = up
    env = commands_env(tmp_path / "data")
    status = subprocess.run(
        [*recog_command(), "status", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0, status.stderr
    assert status.stderr.startswith("recog: using Redis redis://:***@127.0.0.1:")  # its password not shown
    assert f"(the `recog up` of {tmp_path / 'data'}, pid {process.pid})" in status.stderr
    snapshot = json.loads(status.stdout)
    assert len(snapshot["shards"]) == 2  # the stack's RECOG_SHARDS, from its record
    assert [worker["live"] for worker in snapshot["workers"]] == [True]

    made = subprocess.run(
        [*recog_command(), "apikey", "create"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    key = made.stdout.strip()
    assert httpx.get(f"{url}/api/v0/collection/", params={"api_key": key}).status_code == 200

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert not (tmp_path / "data" / stackfile.FILE_NAME).exists()
    after = subprocess.run(
        [*recog_command(), "status"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert after.returncode == 1 and "no `recog up` is running" in after.stderr


def test_a_busy_port_stops_recog_up_before_it_starts_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*recog_command(), "up", "--port", str(port)],
            env=commands_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "recog is up" not in result.stdout
    assert not (tmp_path / "data" / "redis").exists()


def test_the_private_redis_has_a_password_kept_across_runs_and_never_shown(tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "up.log"
    passwords = []
    for _ in range(2):
        with recog_up(data, log) as (process, _url):
            password = (data / "redis-password").read_text().strip()
            passwords.append(password)
            # The banner names the private Redis with the password masked; its port is all we take from it.
            port = int(re.findall(rb"Redis redis://:\*\*\*@127\.0\.0\.1:(\d+)/0", log.read_bytes())[-1])
            with (
                redis.Redis(port=port, socket_connect_timeout=2) as anonymous,
                pytest.raises(redis.AuthenticationError),
            ):
                anonymous.ping()
            with redis.Redis(port=port, password=password, socket_connect_timeout=2) as client:
                assert client.ping()
            redis_pid = child_running(process, "redis-server")
            assert redis_pid is not None
            assert password.encode() not in Path(f"/proc/{redis_pid}/cmdline").read_bytes()
    assert passwords[0] == passwords[1]  # the second run reused the first one's
    assert stat.S_IMODE((data / "redis-password").stat().st_mode) == 0o600
    output = log.read_bytes()
    assert output.count(BANNER) == 2 and passwords[0].encode() not in output
