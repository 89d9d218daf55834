"""Child processes of `recog up` (and of the tests and benches that start parts of the stack):
a free port for one, and how to stop them without waiting for ever."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("recog.launcher")


class LaunchError(RuntimeError):
    """A part of the stack could not be started; the message says which and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def never() -> bool:
    """The default `hurry` of `stop_processes`: wait the whole grace period."""
    return False


def stop_processes(
    processes: Sequence[subprocess.Popen[bytes]], grace: float, what: str, hurry: Callable[[], bool] = never
) -> None:
    """SIGTERM to each, then SIGKILL to any still running after `grace` seconds, or as soon as `hurry()`."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in running) and time.monotonic() < deadline and not hurry():
        time.sleep(0.05)
    for process in running:
        if process.poll() is None:
            why = "as asked" if hurry() else f"still running after {grace:.0f} s"
            log.warning("killing %s (pid %d), %s", what, process.pid, why)
            process.kill()
        process.wait()
