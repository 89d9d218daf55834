"""Waiting for something to happen, within a bound, instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Calls `predicate` until it returns a true value, and returns that value.

    Raises AssertionError saying `what` did not happen when no call begun within `timeout` seconds
    returned true: the last call begins at the bound, so a wait of `timeout=1.0` checks a "within
    1 s" promise, not "within 1 s plus however long the check takes". `what` says what was awaited,
    e.g. "the new reference is searchable".
    """
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value:
        left = deadline - time.monotonic()
        if left <= 0:
            shown = repr(value)
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            raise AssertionError(f"not within {timeout:g} s: {what} (last check gave {shown})")
        time.sleep(min(interval, left))
        value = predicate()
    return value
