"""The suite's one way to wait: poll a condition until it holds or a deadline passes.

Deadlines are generous: the suite shares a few busy CPUs with the control plane, MinIO and the
operator, and a deadline that is too short fails for the wrong reason. A test that fails still
fails in time, with what it waited for and the last value it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 120.0
INTERVAL = 0.25


def poll(predicate: Callable[[], T], timeout: float, interval: float = INTERVAL) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` seconds pass; return
    its last value either way (for a caller that acts on a deadline instead of failing)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    return value


def wait_for(predicate: Callable[[], T], timeout: float = TIMEOUT, what: str | Callable[[], str] = "condition",
             interval: float = INTERVAL) -> T:
    """The first truthy value of ``predicate()``; an AssertionError naming ``what`` (a text, or a
    function that describes the state at the deadline) and the last value seen when ``timeout``
    seconds pass first. An exception the predicate raises ends the wait at once."""
    value = poll(predicate, timeout, interval)
    if not value:
        described = what() if callable(what) else what
        raise AssertionError(f"timed out after {timeout:g}s waiting for {described}; last value: {value!r:.3000}")
    return value
