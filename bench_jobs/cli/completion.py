"""Shell completion of site names (--site) and scheduler events or scheduled methods (trigger-scheduler-event).

Completion runs at every Tab press: it must answer fast and never fail, so any error completes nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from ..core.bench import Bench


def complete_site(ctx: typer.Context, incomplete: str) -> list[str]:
    """`all` and the bench's site names that start with what was typed."""
    bench = _bench_of(ctx)
    if bench is None:
        return []
    from ..core.bench import ALL_SITES

    return [name for name in [ALL_SITES, *bench.site_names()] if name.startswith(incomplete)]


def complete_event(ctx: typer.Context, incomplete: str) -> list[str]:
    """The scheduler events, then the dotted paths of the bench's scheduled jobs, that start with what was
    typed (the paths only once a dot is typed, or when no event matches: events are what people mostly want)."""
    from ..core.hooks import KNOWN_EVENTS

    events = sorted(event for event in KNOWN_EVENTS if event.startswith(incomplete))
    if events and "." not in incomplete:
        return events
    bench = _bench_of(ctx)
    return sorted(method for method in _scheduled_methods(bench) if method.startswith(incomplete)) if bench else []


def _bench_of(ctx: typer.Context) -> Bench | None:
    """The bench the command line names (--bench before or after the command), else the usual lookup."""
    from ..core.bench import find_bench

    given: Any = None
    current: Any = ctx
    while current is not None and given is None:
        given = current.params.get("command_bench") or current.params.get("bench")
        current = current.parent
    try:
        return find_bench(given if isinstance(given, str) else None)
    except Exception:  # completion never fails: no bench, no suggestions
        return None


def _scheduled_methods(bench: Bench) -> set[str]:
    from ..core.config import load_site_settings
    from ..core.context import use_bench
    from ..scheduler.tick import site_jobs

    methods: set[str] = set()
    try:
        use_bench(bench)
        for site in bench.site_names():
            methods |= {job.method for job in site_jobs(load_site_settings(bench, site))[0]}
    except Exception:  # a broken config or hook: complete what was read
        pass
    return methods
