"""Cursor values: timestamps compare as instants, numbers as numbers, lookback keeps the format."""

from __future__ import annotations

import pytest

from api_poller.core.incremental import CursorValueError, highest, is_later, max_cursor_value, minus_lookback


def test_timestamps_compare_as_instants_whatever_their_offset() -> None:
    assert is_later("2025-01-01T01:30:00+01:00", "2025-01-01T00:29:59Z")
    assert not is_later("2025-01-01T01:30:00+01:00", "2025-01-01T00:30:00Z")


def test_the_highest_value_of_pages_and_records() -> None:
    assert highest([None, 3, 12.5, 7]) == 12.5
    assert highest([None]) is None
    records = [{"u": "2025-01-01T00:00:00Z"}, {"u": None}, {"u": "2025-01-02T00:00:00Z"}, {}]
    assert max_cursor_value(records, "u") == "2025-01-02T00:00:00Z"


@pytest.mark.parametrize(
    ("value", "lookback", "sent"),
    [
        ("2025-01-01T00:00:00Z", 90, "2024-12-31T23:58:30Z"),
        ("2025-01-01T00:00:00+02:00", 60, "2024-12-31T23:59:00+02:00"),
        (1000, 10, 990),
        (10.5, 0.5, 10.0),
        ("2025-01-01T00:00:00Z", 0, "2025-01-01T00:00:00Z"),
    ],
)
def test_lookback_is_subtracted_in_the_values_own_format(value, lookback, sent) -> None:
    assert minus_lookback(value, lookback) == sent


def test_values_that_do_not_compare_are_refused() -> None:
    with pytest.raises(CursorValueError):
        max_cursor_value([{"u": 1}, {"u": "abc"}], "u")
    with pytest.raises(CursorValueError):
        max_cursor_value([{"u": True}], "u")
    with pytest.raises(CursorValueError, match="lookback needs"):
        minus_lookback("abc", 5)
