"""The scheduler's pulse, the read model behind its Prometheus metrics: the leader's last tick (its age, lag
and duration), how many `schedule` processes beat, and the ever-growing counts of fires, skips and outcomes
per site and event that the history keeps beside its capped list (history.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis

from ..core.config import BenchSettings
from ..core.keys import Keys
from ..jobs.history import read_counts
from .leader import live_processes, read_heartbeat


@dataclass(frozen=True)
class SchedulerPulse:
    """The scheduler seen from Redis at `now`; the tick fields are None when no scheduler ever ticked."""

    tick_interval_s: int
    processes: int  # `schedule` processes, leader or standby, that beat within the last few ticks
    last_tick_age_s: float | None
    tick_lag_s: float | None  # how late after its boundary the last tick began
    tick_duration_s: float | None
    history_counts: dict[tuple[str, str, str], int]  # (status, site, event) -> entries ever written


def read_pulse(conn: redis.Redis, settings: BenchSettings, now: datetime) -> SchedulerPulse:
    """The scheduler's pulse in three round trips."""
    keys = Keys(settings.bench_id)
    beat = read_heartbeat(conn, keys) or {}
    age_s = (now - datetime.fromisoformat(beat["at"])).total_seconds() if "at" in beat else None
    return SchedulerPulse(
        tick_interval_s=settings.tick_interval_s,
        processes=live_processes(conn, keys, now, settings.tick_interval_s),
        last_tick_age_s=None if age_s is None else max(0.0, age_s),
        tick_lag_s=_number(beat.get("tick_lag_s")),
        tick_duration_s=_number(beat.get("tick_duration_s")),
        history_counts=read_counts(conn, keys),
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
