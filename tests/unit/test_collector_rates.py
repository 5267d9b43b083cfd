"""Counters to rates: first reading, steady rate, resets by start time and by a falling counter."""

from __future__ import annotations

import time

import pytest

from collectors._rates import Counters


def test_first_reading_of_a_series_gives_no_rate_and_the_second_gives_delta_over_time() -> None:
    c = Counters()
    assert c.rate("k", 100.0, 1000.0, "s") is None
    assert c.rate("k", 160.0, 1010.0, "s") == pytest.approx(6.0)


def test_a_changed_start_time_is_a_reset_even_when_the_counter_grew() -> None:
    c = Counters()
    c.rate("k", 100.0, 1000.0, "boot-1")
    # Restarted and already past the old value: without the start time this would be a bogus rate.
    assert c.rate("k", 150.0, 1010.0, "boot-2") is None
    assert c.rate("k", 170.0, 1020.0, "boot-2") == pytest.approx(2.0)


def test_a_falling_counter_is_a_reset_and_never_a_negative_rate() -> None:
    c = Counters()
    c.rate("k", 1_000_000.0, 1000.0)
    assert c.rate("k", 10.0, 1015.0) is None
    assert c.rate("k", 40.0, 1030.0) == pytest.approx(2.0)


def test_the_same_reading_served_twice_gives_no_rate_and_keeps_the_older_base() -> None:
    c = Counters()
    c.rate("k", 100.0, 1000.0)
    assert c.rate("k", 100.0, 1000.0) is None
    assert c.rate("k", 130.0, 1010.0) == pytest.approx(3.0)


def test_a_missing_value_or_time_gives_no_rate_and_forgets_nothing() -> None:
    c = Counters()
    c.rate("k", 100.0, 1000.0)
    assert c.rate("k", None, 1005.0) is None
    assert c.rate("k", 120.0, None) is None
    assert c.rate("k", 120.0, 1010.0) == pytest.approx(2.0)


def test_sweep_forgets_series_not_updated_recently() -> None:
    c = Counters()
    c.rate("old", 1.0, 1.0)
    time.sleep(0.02)
    c.rate("new", 1.0, 1.0)
    assert c.sweep(0.01) == 1
    assert len(c) == 1
    assert c.rate("old", 5.0, 2.0) is None  # forgotten: a first reading again
