"""Audit timestamps: RFC 3339 UTC with microseconds, and parsing of --since/--until."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format_rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_rfc3339() -> str:
    return format_rfc3339(datetime.now(UTC))


def parse_bound(text: str, *, now: datetime | None = None) -> str:
    """Accept RFC 3339 / ISO dates ("2025-01-31", "2025-01-31T10:00:00Z") or a relative
    duration ("15m", "24h", "7d"); return the normalised RFC 3339 form stored records use,
    so bounds compare as strings against the ``time`` column."""
    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value and value[-1] in units and value[:-1].isdigit():
        base = now or datetime.now(UTC)
        return format_rfc3339(base - timedelta(seconds=int(value[:-1]) * units[value[-1]]))
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(
            f"invalid time {text!r}: use RFC 3339 (2025-01-31T10:00:00Z), a date, or 15m/24h/7d"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return format_rfc3339(dt)
