"""Counters to rates: remembers the last reading of every counter series.

A rate is ``(v2 - v1) / (t2 - t1)`` with the times kubelet stamped on the
readings (not the scrape's wall clock, which carries the API server's and the
proxy's latency). No rate is given for the first reading of a series, when
the series' start time changed (container restarted, node rebooted) or the
counter went down (a reset the start time did not show): a reset never
yields a negative or huge rate.
"""

from __future__ import annotations

import time
from collections.abc import Hashable


class Counters:
    """Last readings per series key; safe for threads that touch disjoint keys (one node each)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        # key -> (value, kubelet time, series start, monotonic time of the update)
        self._last: dict[Hashable, tuple[float, float, str, float]] = {}

    def __len__(self) -> int:
        return len(self._last)

    def rate(self, key: Hashable, value: float | None, t: float | None, start: str = "") -> float | None:
        """The per-second rate since the previous reading of ``key``, or None (see the module doc)."""
        if value is None or t is None:
            return None
        prev = self._last.get(key)
        now = time.monotonic()
        if prev is None or prev[2] != start or value < prev[0]:
            self._last[key] = (value, t, start, now)
            return None
        dt = t - prev[1]
        if dt <= 0:
            # The same reading served again (kubelet's cache was not refreshed
            # yet): keep the older reading as the base, no rate this time.
            return None
        self._last[key] = (value, t, start, now)
        return (value - prev[0]) / dt

    def sweep(self, max_idle_s: float) -> int:
        """Forget series not updated for ``max_idle_s`` (deleted pods); returns how many."""
        cutoff = time.monotonic() - max_idle_s
        stale = [k for k, v in self._last.items() if v[3] < cutoff]
        for k in stale:
            self._last.pop(k, None)
        return len(stale)
