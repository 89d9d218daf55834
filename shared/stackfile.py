"""Which stack a command talks to: the record a running `recog up` leaves in RECOG_DATA_DIR.

`recog up` runs its private Redis on a free port (and may protect it with a password), so a command
in a second shell cannot guess where it is; without this record it would talk to a default Redis
that holds nothing, and say nothing is wrong. `recog up` writes `stack.json` (owner-only: the Redis
URL may carry a password) once the API answers, and removes it when it stops cleanly; a record left
by a `recog up` that was killed is recognised by its dead pid and ignored.

Commands resolve their `Target` from explicit settings first (REDIS_URL, RECOG_API_URL), then from
the record; URLs are only ever shown through `shared.config.redacted_url`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.failures import CommandFailed
from shared.redaction import redacted_url

FILE_NAME = "stack.json"
# Used by servers (`recog serve`, `recog worker`) when nothing names a Redis: a server starting on
# a fresh, empty Redis is normal. Client commands refuse to guess instead.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class NoStack(CommandFailed):
    """Nothing says which Redis or API a command should use; the message says how to name one."""


@dataclass(frozen=True, kw_only=True)
class StackRecord:
    """Where the parts of one running `recog up` answer, its shard count (RECOG_SHARDS, which every
    command on a stack must agree on) and the pid of that `recog up`."""

    redis_url: str
    api_url: str
    shards: int
    pid: int


def write(data_dir: Path, record: StackRecord) -> None:
    """Writes the record atomically (a reader never sees half of it), readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / f".{FILE_NAME}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(asdict(record), file)
    os.replace(temporary, data_dir / FILE_NAME)


def read(data_dir: Path) -> StackRecord | None:
    """The record of the `recog up` running on `data_dir`; None if there is none, or if the
    `recog up` that wrote it is no longer running (killed before it could remove it)."""
    try:
        raw = json.loads((data_dir / FILE_NAME).read_text())
        record = StackRecord(
            redis_url=str(raw["redis_url"]), api_url=str(raw["api_url"]), shards=int(raw["shards"]), pid=int(raw["pid"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if _running(record.pid) else None


def remove(data_dir: Path, pid: int) -> None:
    """Removes the record if process `pid` wrote it (another `recog up` may have replaced it)."""
    path = data_dir / FILE_NAME
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


@dataclass(frozen=True, kw_only=True)
class Target:
    """The Redis and API a command uses ("" when unknown), and where each choice came from."""

    redis_url: str
    api_url: str
    shards: int | None  # the recorded stack's, unless RECOG_SHARDS is set
    origin: str  # e.g. "REDIS_URL" or "the `recog up` of /srv/recog-data, pid 12"
    from_record: bool  # something came from a running `recog up`'s record

    def describe(self, *, redis: bool, api: bool) -> str:
        """One line for stderr naming the stack, passwords masked."""
        parts = ([f"Redis {redacted_url(self.redis_url)}"] if redis else []) + ([f"API {self.api_url}"] if api else [])
        return f"recog: using {', '.join(parts)} ({self.origin})"


def resolve(
    env: Mapping[str, str], data_dir: Path, *, need_redis: bool, need_api: bool, server: bool = False
) -> Target:
    """The stack a command should talk to.

    REDIS_URL and RECOG_API_URL, when set, win; what they leave open comes from the running
    `recog up`'s record, but the record's API only goes with the record's Redis (an API on another
    Redis would be a different stack). Raises NoStack for what a command needs and nothing names,
    except that a server (`server=True`) falls back to DEFAULT_REDIS_URL.
    """
    redis_url, api_url = env.get("REDIS_URL", ""), env.get("RECOG_API_URL", "").rstrip("/")
    explicit = [name for name, value in (("REDIS_URL", redis_url), ("RECOG_API_URL", api_url)) if value]
    record = read(data_dir)
    origins, from_record, shards = explicit, False, None
    if record is not None and redis_url in ("", record.redis_url) and len(explicit) < 2:
        redis_url = redis_url or record.redis_url
        api_url = api_url or record.api_url
        shards = None if env.get("RECOG_SHARDS") else record.shards
        origins, from_record = [*explicit, f"the `recog up` of {data_dir}, pid {record.pid}"], True
    if need_redis and not redis_url:
        if not server:
            raise NoStack(
                f"no `recog up` is running on {data_dir} and REDIS_URL is not set: start `recog up`, "
                "set RECOG_DATA_DIR to the data directory of the one running, or set REDIS_URL"
            )
        redis_url, origins = DEFAULT_REDIS_URL, [*origins, "the default"]
    if need_api and not api_url:
        raise NoStack(
            f"no `recog up` is running on {data_dir} and RECOG_API_URL is not set: start `recog up`, "
            "set RECOG_DATA_DIR to the data directory of the one running, or set RECOG_API_URL"
        )
    return Target(
        redis_url=redis_url, api_url=api_url, shards=shards, origin=" and ".join(origins), from_record=from_record
    )
