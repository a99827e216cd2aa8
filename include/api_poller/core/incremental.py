"""Values of an incremental cursor field: how they compare, their maximum, the lookback.

A cursor field grows: a number (an id, an epoch), or a timestamp string (ISO 8601, e.g.
``2025-01-01T00:00:00Z``). Timestamps compare as instants (``...+01:00`` and ``...Z`` forms agree);
other strings compare as text. A number and a string never compare: that is an error, since the
source's field changed type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from api_poller.core.errors import FatalError

CursorValue = str | int | float


class CursorValueError(FatalError):
    """A cursor value that cannot be compared or shifted."""


def parse_timestamp(text: str) -> datetime | None:
    """An ISO 8601 instant (naive ones are UTC), or None when ``text`` is not one."""
    candidate = text.strip()
    if len(candidate) < 10 or not candidate[:4].isdigit():
        return None
    try:
        parsed = datetime.fromisoformat(candidate.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _order_key(value: CursorValue) -> tuple[int, Any]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CursorValueError(f"cursor value {value!r} is not a number or a string")
    if isinstance(value, int | float):
        return 0, value
    instant = parse_timestamp(value)
    return (1, instant) if instant is not None else (2, value)


def is_later(value: CursorValue, than: CursorValue) -> bool:
    """Whether ``value`` is strictly after ``than``; CursorValueError if they do not compare."""
    mine, theirs = _order_key(value), _order_key(than)
    if mine[0] != theirs[0]:
        raise CursorValueError(f"cursor values {than!r} and {value!r} are of different kinds")
    return bool(mine[1] > theirs[1])


def max_cursor_value(records: Iterable[Mapping[str, Any]], field: str) -> CursorValue | None:
    """The highest ``field`` value of the records (None when no record has one)."""
    best: CursorValue | None = None
    for record in records:
        value = record.get(field)
        if value is None:
            continue
        _order_key(value)  # a boolean or an object is refused, even as the first value
        if best is None or is_later(value, best):
            best = value
    return best


def _format_like(original: str, instant: datetime) -> str:
    """``instant`` written the way ``original`` was (a trailing Z kept, else an offset)."""
    if original.strip().upper().endswith("Z"):
        return instant.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="auto") + "Z"
    return instant.isoformat(timespec="auto")


def minus_lookback(value: CursorValue, lookback: float) -> CursorValue:
    """The value sent to the API: ``lookback`` seconds (timestamps) or units (numbers) earlier."""
    if not lookback:
        return value
    if isinstance(value, bool):
        raise CursorValueError(f"cursor value {value!r} is not a number or a string")
    if isinstance(value, int) and float(lookback).is_integer():
        return value - int(lookback)
    if isinstance(value, int | float):
        return value - lookback
    instant = parse_timestamp(value)
    if instant is None:
        raise CursorValueError(f"lookback needs a number or an ISO 8601 timestamp, not {value!r}")
    return _format_like(value, instant - timedelta(seconds=lookback))


def highest(values: Iterable[CursorValue | None]) -> CursorValue | None:
    """The highest of some cursor values (the job's, from its pages' ``max_cursor``); None if none."""
    best: CursorValue | None = None
    for value in values:
        if value is not None and (best is None or is_later(value, best)):
            best = value
    return best
