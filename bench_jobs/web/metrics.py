"""The bench's Prometheus metrics in the text exposition format: what `/metrics` of the dashboard serves and
`bench-jobs metrics` prints. Each render reads Redis afresh (census.py, pulse.py); nothing is kept between
scrapes, so any number of dashboards, cron jobs and processes may render them.

Job durations are a gauge histogram (Prometheus' type for a distribution that can shrink): the run times of
the newest DURATION_SAMPLE finished jobs per queue that RQ still keeps (for `job_result_ttl`), so read it
with histogram_quantile() on its buckets as they are, not on rate().
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.bench import Bench
from ..core.config import load_bench_settings
from ..core.connection import connect_checked
from ..core.keys import Keys
from ..errors import ConfigError
from ..jobs.census import DURATION_SAMPLE, JobCensus, take_census
from ..jobs.fair import SiteLoad, capped_sites, site_loads
from ..jobs.history import EntryHealth, read_health
from ..scheduler.clock import read_clock
from ..scheduler.pulse import SchedulerPulse, read_pulse

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

WORKER_STATES = ("idle", "busy", "suspended")
DURATION_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
# History statuses exposed as counters: name, help.
HISTORY_COUNTERS = {
    "queued": ("bench_jobs_scheduler_fires", "Scheduled runs the scheduler queued (fired), by site and event."),
    "skipped": (
        "bench_jobs_scheduler_skips",
        "Scheduled slots skipped (previous run still queued or running, or the site's scheduler off), by site and "
        "event.",
    ),
    "failed": ("bench_jobs_scheduled_job_failures", "Scheduled runs that failed, by site and event."),
    "finished": ("bench_jobs_scheduled_job_successes", "Scheduled runs that finished, by site and event."),
}


def render_metrics(bench: Bench, now: datetime | None = None) -> bytes:
    """The bench's metrics in Prometheus' text format (serve them as `content_type()`). RedisUnavailable
    (exit 3) when Redis does not answer; ConfigError (exit 2) when prometheus_client is not installed."""
    started = time.perf_counter()
    prometheus = _prometheus()
    settings = load_bench_settings(bench)
    conn = connect_checked(settings)
    now = now or read_clock(conn).now  # Redis's: the scheduler's heartbeats carry its time
    census, pulse = take_census(conn, settings, now), read_pulse(conn, settings, now)
    capped = site_loads(
        conn, settings.bench_id, capped_sites(conn, settings.bench_id, bench.site_names()), list(settings.queues)
    )
    health = read_health(conn, Keys(settings.bench_id), bench.site_names())
    families = [
        *_job_families(census, now),
        *_scheduler_families(pulse),
        *_cap_families(capped),
        *_entry_families(health, now),
    ]
    scrape = prometheus.core.GaugeMetricFamily(
        "bench_jobs_scrape_duration_seconds", "How long reading these metrics from Redis took."
    )
    scrape.add_metric([], time.perf_counter() - started)
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families, scrape]))
    return bytes(prometheus.generate_latest(registry))


class _Families:
    """A collector that yields metric families read once (prometheus_client's custom-collector protocol)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError:
        raise ConfigError(
            "The metrics need prometheus_client, which is not installed.",
            hint="Install the web extra: pip install -e '.[web]' (or pip install 'bench-jobs[web]').",
        ) from None
    return prometheus_client


def content_type() -> str:
    """The HTTP content type of `render_metrics`' bytes: prometheus_client.CONTENT_TYPE_LATEST."""
    return str(_prometheus().CONTENT_TYPE_LATEST)


def _job_families(census: JobCensus, now: datetime) -> list[Metric]:
    from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily

    jobs = GaugeMetricFamily(
        "bench_jobs_jobs",
        "Jobs by queue, site and state (queued, started, failed, finished, scheduled, deferred), as show-queue "
        "counts them; site is (unknown) for ids bench-jobs did not make.",
        labels=["queue", "site", "state"],
    )
    for (queue, site, state), count in sorted(census.jobs.items()):
        jobs.add_metric([queue, site, state], count)
    orphaned = GaugeMetricFamily(
        "bench_jobs_orphaned_jobs", "Started jobs whose worker is dead (recovered soon), by queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "bench_jobs_oldest_queued_job_age_seconds",
        "How long the oldest queued job of the queue has waited (0 when none waits).",
        labels=["queue"],
    )
    serving = GaugeMetricFamily("bench_jobs_queue_workers", "Live workers serving the queue.", labels=["queue"])
    durations = GaugeHistogramMetricFamily(
        "bench_jobs_job_duration_seconds",
        f"Run times of the newest {DURATION_SAMPLE} finished jobs per queue that RQ still keeps (job_result_ttl).",
        labels=["queue"],
    )
    for row in census.queues:
        orphaned.add_metric([row.name], row.orphaned)
        since = census.oldest_queued_at.get(row.name)
        oldest.add_metric([row.name], max(0.0, (now - since).total_seconds()) if since else 0.0)
        serving.add_metric([row.name], len(row.workers))
        times = census.durations_s.get(row.name, [])
        buckets = [(_le(bound), sum(1 for t in times if t <= bound)) for bound in DURATION_BUCKETS_S]
        durations.add_metric([row.name], [*buckets, ("+Inf", len(times))], gsum_value=sum(times))
    workers = GaugeMetricFamily(
        "bench_jobs_workers", "Live workers of the bench by RQ's state (idle, busy, suspended).", labels=["state"]
    )
    for state in sorted({*WORKER_STATES, *census.workers_by_state}):  # 0 too, so an alert has a series
        workers.add_metric([state], census.workers_by_state.get(state, 0))
    return [jobs, orphaned, oldest, serving, durations, workers]


def _cap_families(loads: list[SiteLoad]) -> list[Metric]:
    """Sites with a max_concurrent_jobs cap: the cap, their jobs running under it, and their jobs waiting."""
    from prometheus_client.core import GaugeMetricFamily

    cap = GaugeMetricFamily("bench_jobs_site_cap", "The site's max_concurrent_jobs.", labels=["site"])
    running = GaugeMetricFamily(
        "bench_jobs_site_running_jobs", "Jobs of a capped site taken or running on any worker.", labels=["site"]
    )
    waiting = GaugeMetricFamily(
        "bench_jobs_site_waiting_on_cap_jobs",
        "Queued jobs of a capped site while it is at its cap (they wait; other sites go on).",
        labels=["site"],
    )
    for load in loads:
        cap.add_metric([load.site], load.cap or 0)
        running.add_metric([load.site], load.running)
        waiting.add_metric([load.site], load.queued if load.at_cap else 0)
    return [cap, running, waiting]


def _entry_families(health: dict[tuple[str, str], EntryHealth], now: datetime) -> list[Metric]:
    """Per scheduled entry with a skip streak or a success: the streak, and the age of its last success."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["site", "method", "event"]
    skips = GaugeMetricFamily(
        "bench_jobs_schedule_consecutive_skips",
        "Slots of the entry skipped in a row because its previous run was still queued or running (0 once it fires).",
        labels=labels,
    )
    age = GaugeMetricFamily(
        "bench_jobs_schedule_last_success_age_seconds",
        "Seconds since a scheduled run of the entry last finished (absent until one has).",
        labels=labels,
    )
    for (site, field), entry in sorted(health.items()):
        event, _, method = field.partition("|")
        skips.add_metric([site, method, event], entry.skips_in_a_row)
        if entry.last_success is not None:
            age.add_metric([site, method, event], max(0.0, (now - entry.last_success).total_seconds()))
    return [skips, age]


def _le(bound: float) -> str:
    return f"{bound:g}" if bound < 1 else f"{bound:.1f}"


def _scheduler_families(pulse: SchedulerPulse) -> list[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    families: list[Metric] = []

    def gauge(name: str, text: str, value: float | None) -> None:
        if value is not None:
            family = GaugeMetricFamily(name, text)
            family.add_metric([], value)
            families.append(family)

    gauge("bench_jobs_scheduler_processes", "`schedule` processes (leader and standbys) beating.", pulse.processes)
    gauge("bench_jobs_scheduler_tick_interval_seconds", "scheduler_tick_interval of the bench.", pulse.tick_interval_s)
    gauge(
        "bench_jobs_scheduler_last_tick_age_seconds",
        "Seconds since the leader's last tick (absent when no scheduler ever ticked).",
        pulse.last_tick_age_s,
    )
    gauge(
        "bench_jobs_scheduler_tick_lag_seconds",
        "How late after its wall-clock boundary the last tick began.",
        pulse.tick_lag_s,
    )
    gauge("bench_jobs_scheduler_tick_duration_seconds", "How long the last tick took.", pulse.tick_duration_s)
    counters = {
        status: CounterMetricFamily(name, text, labels=["site", "event"])
        for status, (name, text) in HISTORY_COUNTERS.items()
    }
    for (status, site, event), count in sorted(pulse.history_counts.items()):
        if status in counters:
            counters[status].add_metric([site, event], count)
    families.extend(counters.values())
    return families
