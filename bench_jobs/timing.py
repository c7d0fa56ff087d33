"""Pure cron and time-zone arithmetic: the only module that imports croniter."""

from __future__ import annotations

from croniter import croniter

# Frappe's CRON_MAP. `all` has no cron: it fires on every scheduler tick.
EVENT_CRONS: dict[str, str | None] = {
    "all": None,
    "hourly": "0 * * * *",
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
    "annual": "0 0 1 1 *",
}


def cron_problem(expression: object) -> str | None:
    """Why `expression` is not a valid 5-field cron string, or None when it is."""
    if not isinstance(expression, str):
        return f"a cron string must be text, not {type(expression).__name__}"
    fields = expression.split()
    if len(fields) != 5:
        return f"a cron string has 5 fields (minute hour day month weekday), this one has {len(fields)}"
    if not croniter.is_valid(expression):
        return "not a valid cron expression"
    return None
