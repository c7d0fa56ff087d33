"""`why METHOD`: what the scheduler decided at each recent slot of a scheduled job, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from . import state


def _when(moment: datetime | None, zone: str) -> str | None:
    if moment is None:
        return None
    from ..core.cron import zone_info

    return moment.astimezone(zone_info(zone)).isoformat(timespec="seconds")


def why(
    method: str = typer.Argument(..., help="The dotted path of a scheduled job, as show-schedule lists it."),
    slots: int = typer.Option(5, "--slots", "-n", min=1, max=100, help="How many recent slots to explain."),
    as_json: bool = typer.Option(False, "--json", help="Print the verdicts as JSON."),
) -> int:
    """Explain the last slots of each scheduled entry of METHOD: fired (its job and outcome), skipped (why:
    its previous run still queued or running, with that run's id and age; the site's scheduler disabled; the
    site in maintenance; the bench paused; a hook problem), not seen (no scheduler tick covered the slot: the
    gap), or pending; then its next slot. Times are in the site's zone.

    Exit 0 when every slot explained fired, was first seen or is pending; 1 when any was skipped, not seen
    or failed to queue (so a monitor can ask).

    Examples:

    \b
      bench-jobs --site site1.local why demo_app.tasks.cleanup
      bench-jobs --site all why demo_app.tasks.cleanup --slots 10 --json
    """
    from datetime import timezone

    from ..core.config import load_bench_settings
    from ..core.connection import connect_checked
    from ..scheduler.why_view import explain

    found = state.bench()
    sites = state.sites(found)
    conn = connect_checked(load_bench_settings(found))
    entries = explain(found, sites, method, conn, datetime.now(timezone.utc), slots)
    trouble = any(v.decision in ("skipped", "not_seen", "failed") for e in entries for v in e.slots)
    trouble = trouble or any(e.problem for e in entries)
    if as_json:
        state.print_json({"entries": [_entry_json(entry) for entry in entries]})
    else:
        _print(entries)
    return 1 if trouble else 0


def _entry_json(entry: Any) -> dict[str, Any]:
    zone = entry.timezone
    return {
        "site": entry.site,
        "event": entry.event,
        "method": entry.method,
        "cron": entry.cron,
        "cron_words": entry.cron_words,
        "timezone": zone,
        "scheduler": entry.status,
        "problem": entry.problem,
        "next_slot": _when(entry.next_slot, zone),
        "slots": [
            {
                "slot": _when(v.slot, zone),
                "decision": v.decision,
                "reason": v.reason,
                "job_id": v.job_id,
                "outcome": v.outcome,
                "blocked_by": v.blocked_by,
                "blocked_for_s": v.blocked_for_s,
                "gap_from": _when(v.gap_from, zone),
                "gap_to": _when(v.gap_to, zone),
            }
            for v in entry.slots
        ],
    }


STYLES = {"fired": "green", "first_seen": "green", "pending": "cyan", "skipped": "yellow", "unknown": "dim"}


def _print(entries: list[Any]) -> None:
    from rich.text import Text

    from .tables import table, title

    out = state.console()
    for entry in entries:
        if entry.problem:
            title(f"{entry.site}: {entry.method}")
            out.print(f"  broken hook entry, never scheduled: {entry.problem}")
            out.print("")
            continue
        off = "" if entry.status == "enabled" else f"; scheduler {entry.status}"
        title(f"{entry.site}: {entry.method} ({entry.event}, {entry.cron_words}; times in {entry.timezone}{off})")
        grid = table()
        grid.add_column("slot", no_wrap=True)
        grid.add_column("decision", no_wrap=True)
        grid.add_column("why", overflow="fold")
        for verdict in entry.slots:
            style = STYLES.get(verdict.decision, "red")
            when = _when(verdict.slot, entry.timezone) or ""
            grid.add_row(when, Text(verdict.decision, style=style), verdict.reason)
        out.print(grid)
        out.print(f"  next slot: {_when(entry.next_slot, entry.timezone)}")
        out.print("")
