"""The stack record: private, ignored once stale, and the order in which commands pick their stack."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared import stackfile
from shared.stackfile import NoStack, StackRecord

REDIS = "redis://127.0.0.1:40001/0"
API = "http://127.0.0.1:40002"


def record(pid: int | None = None) -> StackRecord:
    return StackRecord(redis_url=REDIS, api_url=API, shards=2, pid=os.getpid() if pid is None else pid)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_record_is_owner_only_and_read_back(tmp_path: Path) -> None:
    stackfile.write(tmp_path, record())
    assert stat.S_IMODE((tmp_path / stackfile.FILE_NAME).stat().st_mode) == 0o600
    assert stackfile.read(tmp_path) == record()


def test_a_record_whose_recog_up_is_gone_is_ignored(tmp_path: Path) -> None:
    stackfile.write(tmp_path, record(dead_pid()))
    assert stackfile.read(tmp_path) is None


def test_only_the_writer_removes_the_record(tmp_path: Path) -> None:
    stackfile.write(tmp_path, record())
    stackfile.remove(tmp_path, os.getpid() + 1)
    assert stackfile.read(tmp_path) is not None
    stackfile.remove(tmp_path, os.getpid())
    assert not (tmp_path / stackfile.FILE_NAME).exists()


def test_the_running_stack_is_used_when_nothing_is_set(tmp_path: Path) -> None:
    stackfile.write(tmp_path, record())
    target = stackfile.resolve({}, tmp_path, need_redis=True, need_api=True)
    assert (target.redis_url, target.api_url, target.shards, target.from_record) == (REDIS, API, 2, True)
    assert f"the `recog up` of {tmp_path}, pid {os.getpid()}" in target.describe(redis=True, api=True)


def test_a_password_in_the_recorded_url_is_used_but_never_shown(tmp_path: Path) -> None:
    secret = "redis://:s3cret@127.0.0.1:40001/0"
    stackfile.write(tmp_path, StackRecord(redis_url=secret, api_url=API, shards=2, pid=os.getpid()))
    target = stackfile.resolve({}, tmp_path, need_redis=True, need_api=False)
    assert target.redis_url == secret
    assert "s3cret" not in target.describe(redis=True, api=True)


def test_redis_url_wins_and_keeps_the_record_api_only_for_the_same_redis(tmp_path: Path) -> None:
    stackfile.write(tmp_path, record())
    other = stackfile.resolve({"REDIS_URL": "redis://elsewhere:6379/0"}, tmp_path, need_redis=True, need_api=False)
    assert (other.redis_url, other.api_url, other.shards, other.origin) == (
        "redis://elsewhere:6379/0",
        "",
        None,
        "REDIS_URL",
    )
    with pytest.raises(NoStack, match="RECOG_API_URL"):
        stackfile.resolve({"REDIS_URL": "redis://elsewhere:6379/0"}, tmp_path, need_redis=False, need_api=True)
    same = stackfile.resolve({"REDIS_URL": REDIS, "RECOG_SHARDS": "4"}, tmp_path, need_redis=True, need_api=True)
    assert (same.api_url, same.shards) == (API, None)


def test_without_a_stack_clients_fail_and_servers_use_the_default(tmp_path: Path) -> None:
    with pytest.raises(NoStack, match="no `recog up` is running"):
        stackfile.resolve({}, tmp_path, need_redis=True, need_api=False)
    server = stackfile.resolve({}, tmp_path, need_redis=True, need_api=False, server=True)
    assert (server.redis_url, server.from_record) == (stackfile.DEFAULT_REDIS_URL, False)
    api_only = stackfile.resolve({"RECOG_API_URL": API + "/"}, tmp_path, need_redis=False, need_api=True)
    assert api_only.api_url == API
