"""Refusals on one connection are paced; other connections and first refusals are not."""

from __future__ import annotations

import asyncio
import time

from api.pacing import RefusalPacer


def elapsed(pacer: RefusalPacer, connection: tuple[str, int] | None) -> float:
    started = time.monotonic()
    asyncio.run(pacer.pace(connection))
    return time.monotonic() - started


def test_a_connection_refused_again_within_the_gap_waits_out_the_rest() -> None:
    pacer = RefusalPacer(0.2)
    assert elapsed(pacer, ("10.0.0.1", 5000)) < 0.05
    assert elapsed(pacer, ("10.0.0.2", 5000)) < 0.05  # another connection: not held up
    assert 0.1 < elapsed(pacer, ("10.0.0.1", 5000)) < 0.3


def test_a_client_that_honours_retry_after_never_waits() -> None:
    pacer = RefusalPacer(0.05)
    assert elapsed(pacer, ("10.0.0.1", 5000)) < 0.03
    time.sleep(0.06)
    assert elapsed(pacer, ("10.0.0.1", 5000)) < 0.03


def test_unknown_connections_are_not_paced() -> None:
    pacer = RefusalPacer(1.0)
    assert elapsed(pacer, None) < 0.05
    assert elapsed(pacer, None) < 0.05
