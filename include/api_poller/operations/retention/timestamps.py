"""Times as the retention compares them: aware UTC datetimes, and durations in days for messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: str | None) -> datetime | None: ...


def as_utc(value: datetime | str | None) -> datetime | None:
    """An aware UTC datetime from a datetime or an ISO string (naive means UTC); None for empty."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def days_phrase(count: float) -> str:
    """``"1 day"``, ``"3 days"``, ``"0.5 days"``."""
    return f"{count:g} day" + ("" if count == 1 else "s")
