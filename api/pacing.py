"""Refusals paced per connection: a client that ignores Retry-After cannot turn 503s into a CPU sink.

A refused search costs the front end ~0.15 ms, a search a worker ~20 ms. A client that sends its
next request the moment it is refused (ignoring Retry-After) can then make thousands of refusals a
second from a few connections; on a machine the workers share, the requests and refusals take the
CPU the workers need (measured: a 10x overload of such clients cut the searches answered by a
third). So a connection refused less than `gap` seconds ago waits out the rest of the gap before
its next refusal: its first refusal is immediate, and a well-behaved client, which comes back
after Retry-After, never waits. Waiting costs nothing but a timer.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

# Connections remembered; the oldest are forgotten beyond this (one entry is ~100 bytes).
_REMEMBERED = 10_000


class RefusalPacer:
    def __init__(self, gap_seconds: float) -> None:
        self._gap = gap_seconds
        self._last: OrderedDict[tuple[str, int], float] = OrderedDict()

    async def pace(self, connection: tuple[str, int] | None) -> None:
        """Waits until `gap` after this connection's previous refusal, then records this one."""
        if connection is None:
            return
        previous = self._last.pop(connection, None)
        if previous is not None and (wait := previous + self._gap - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        self._last[connection] = time.monotonic()
        while len(self._last) > _REMEMBERED:
            self._last.popitem(last=False)
