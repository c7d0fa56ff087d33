"""doctor's check of stuck schedules: entries skipped slot after slot because their previous run never
finished (Frappe's "skipped ... found in queue" for days), read from the streaks the ticks keep."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from ..core.config import BenchSettings
from ..core.keys import Keys
from ..jobs.history import read_health
from .checks import Check


def stuck_schedule_check(conn: redis.Redis, settings: BenchSettings, sites: Sequence[str]) -> Check:
    """A warning naming site, method and blocking run for each entry skipped `stuck_after_skips` slots or
    more in a row (one round trip for all sites)."""
    limit = settings.stuck_after_skips
    stuck = []
    for (site, field), health in sorted(read_health(conn, Keys(settings.bench_id), sites).items()):
        if health.skips_in_a_row >= limit:
            event, _, method = field.partition("|")
            blocker = health.blocked_by or "unknown"
            stuck.append(
                f"{site}: {method} ({event}) skipped {health.skips_in_a_row} slots in a row, blocked by {blocker}"
            )
    if not stuck:
        return Check("stuck-schedules", True, f"no scheduled job skipped {limit} slots in a row")
    return Check(
        "stuck-schedules",
        True,
        "; ".join(stuck),
        hint="Its previous run is still queued or running: `bench-jobs why METHOD` shows since when; "
        "`show-pending-jobs` shows the run (start a worker for its queue, or purge it). "
        "stuck_after_skips in common_site_config.toml sets the limit.",
        warning=True,
    )
