"""Whether the scheduler fires for a site, and why not: read from config alone, so it answers without Redis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.bench import Bench
from ..core.config import load_bench_settings, load_site_settings


@dataclass(frozen=True)
class SchedulerStatus:
    """One site's scheduler. `status` is the reason that wins when several hold: disabled (the site's own
    switch), then maintenance, then paused (bench-wide), else enabled."""

    site: str
    scheduler_enabled: bool
    maintenance_mode: bool
    paused: bool

    @property
    def status(self) -> str:
        if not self.scheduler_enabled:
            return "disabled"
        if self.maintenance_mode:
            return "maintenance"
        return "paused" if self.paused else "enabled"

    @property
    def fires(self) -> bool:
        return self.status == "enabled"

    def as_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "status": self.status,
            "fires": self.fires,
            "scheduler_enabled": self.scheduler_enabled,
            "maintenance_mode": self.maintenance_mode,
            "paused": self.paused,
        }


def scheduler_statuses(bench: Bench, sites: Sequence[str]) -> list[SchedulerStatus]:
    """Each site's scheduler status, from its merged config and the bench's pause_scheduler."""
    paused = load_bench_settings(bench).scheduler_paused
    statuses = []
    for site in sites:
        settings = load_site_settings(bench, site)
        statuses.append(SchedulerStatus(site, settings.scheduler_enabled, settings.maintenance_mode, paused))
    return statuses
