"""`wait_until`: returns what the predicate found, or fails saying what did not happen in time."""

from __future__ import annotations

import time

import pytest

from shared.testing.wait import wait_until


def test_returns_the_first_true_value() -> None:
    answers = iter([[], [], ["found"]])
    assert wait_until(lambda: next(answers), timeout=5, what="a result", interval=0.001) == ["found"]


def test_fails_with_what_did_not_happen_after_checking_at_the_bound() -> None:
    calls: list[float] = []

    def never() -> bool:
        calls.append(time.monotonic())
        return False

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"not within 0.2 s: the thing happened \(last check gave False\)"):
        wait_until(never, timeout=0.2, what="the thing happened")
    assert len(calls) > 1
    assert calls[-1] >= started + 0.2 - 0.01  # the last check is at the bound, not one interval short of it
