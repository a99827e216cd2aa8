"""Query-parameter validation: a bad value raises ``BadRequest`` naming the parameter (a 400)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from .dataset import RecordFilter

# Far beyond any dataset, and short enough that int() never meets Python's digit limit.
_MAX_DIGITS = 15


class BadRequest(Exception):
    """A request the API refuses with 400 and ``{"error": message}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def _parse_int(name: str, raw: str) -> int:
    # isascii+isdigit: rejects "-1", "+1", " 1", "1_0" and unicode digits.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS):
        raise BadRequest(f"query parameter {name!r} must be a non-negative integer, got {_shown(raw)}")
    return int(raw)


def _parse_timestamp(name: str, raw: str) -> datetime:
    """An ISO-8601 timestamp (a naive one is taken as UTC)."""
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        # A '+' left unencoded in a query string arrives as a space.
        hint = " (send '+' as %2B)" if " " in raw else ""
        raise BadRequest(
            f"query parameter {name!r} must be an ISO-8601 timestamp such as 2025-01-01T00:00:00Z, "
            f"got {_shown(raw)}{hint}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def int_param(request: web.Request, name: str, *, default: int | None = None, minimum: int = 0) -> int:
    """A non-negative integer parameter (``default`` when absent; required if that is None)."""
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"missing query parameter {name!r}")
        return default
    value = _parse_int(name, raw)
    if value < minimum:
        raise BadRequest(f"query parameter {name!r} must be >= {minimum}, got {value}")
    return value


def page_size_param(request: web.Request, name: str, largest: int) -> int:
    """A page size in ``1..largest``, ``largest`` when absent."""
    size = int_param(request, name, default=largest)
    if not 1 <= size <= largest:
        raise BadRequest(f"query parameter {name!r} must be between 1 and {largest}, got {size}")
    return size


def record_filter(request: web.Request) -> RecordFilter:
    """The incremental filters every paginated endpoint takes, all inclusive lower bounds, ANDed.

    ``updated_since=<ISO-8601>``, ``min_id=<n>``, and ``filter=updated_at>=<ISO-8601>`` /
    ``filter=id>=<n>`` (repeatable; for a source's ``filter_template``).
    """
    updated_since = request.query.get("updated_since")
    min_id = request.query.get("min_id")
    since = None if updated_since is None else _parse_timestamp("updated_since", updated_since)
    lowest_id = None if min_id is None else _parse_int("min_id", min_id)
    for expression in request.query.getall("filter", []):
        field, sep, value = expression.partition(">=")
        if sep and field == "updated_at":
            moment = _parse_timestamp("filter", value)
            since = moment if since is None else max(since, moment)
        elif sep and field == "id":
            number = _parse_int("filter", value)
            lowest_id = number if lowest_id is None else max(lowest_id, number)
        else:
            raise BadRequest(
                "query parameter 'filter' must be updated_at>=<ISO-8601> or id>=<n>, "
                f"got {_shown(expression)}"
            )
    return RecordFilter(updated_since=since, min_id=lowest_id)
