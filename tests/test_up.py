"""`recog up` keeps the whole stack running: a part killed with -9 (the API, the private Redis, a
worker) is started again, and the stack answers again, without anyone restarting `recog up`."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.launcher import free_port
from shared.testing.stack import recog_command
from shared.testing.wait import wait_until


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


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_") and k != "REDIS_URL"}
    env.update(RECOG_DATA_DIR=str(tmp_path / "data"), RECOG_SHARDS="2")
    with (tmp_path / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [*recog_command(), "up", "--workers", "1", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: answers(url, "/readyz"), 90, "the stack is ready")
            # Before it says so, `recog up` takes an exit for a failed start (a busy port, say) and stops.
            announced = tmp_path / "up.log"
            wait_until(lambda: b"recog is up" in announced.read_bytes(), 10, "recog up says the stack is up")
            yield process, url
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def test_killed_parts_are_started_again(up: tuple[subprocess.Popen[bytes], str]) -> None:
    process, url = up
    for part in ("shared.cli serve", "redis-server", "shared.cli worker"):
        victim = child_running(process, part)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda p=part, v=victim: child_running(process, p) not in (None, v), 15, f"{part} is started again")
        wait_until(lambda: answers(url, "/readyz"), 30, f"the stack is ready again after killing {part}")
    assert process.poll() is None
