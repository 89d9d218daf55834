"""`recog worker --healthcheck`, the compose healthcheck: healthy once a worker of this host beats
and serves every shard it owns."""

from __future__ import annotations

import subprocess

from shared.testing.stack import Stack, db_url, private_db, recog_command


def healthcheck(redis_url: str) -> int:
    return subprocess.run(
        [*recog_command(), "worker", "--healthcheck"],
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


def test_a_running_worker_is_healthy(stack: Stack) -> None:
    assert healthcheck(stack.env["REDIS_URL"]) == 0


def test_no_worker_is_unhealthy(redis_url: str) -> None:
    with private_db(redis_url, 7) as connection:
        assert healthcheck(db_url(connection)) == 1
