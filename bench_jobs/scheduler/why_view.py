"""Read model of `why METHOD`: each scheduled entry of METHOD on each site with the verdicts on its recent
slots (why.py), from the site's history, the tick spans and state changes, and the RQ jobs still kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq.job import Job
from rq.utils import utcparse

from ..core.bench import Bench
from ..core.config import load_bench_settings, load_site_settings
from ..core.cron import describe_cron, next_slot, recent_slots, zone_info
from ..core.hooks import HookProblem, add_bench_apps_to_path
from ..core.keys import Keys
from ..errors import ConfigError
from ..jobs import history as history
from .status import SchedulerStatus
from .tick import site_jobs
from .ticks import read_site_states, read_spans
from .view import slot_of_run
from .why import Evidence, RunState, SlotRecord, SlotVerdict, explain_slots

DEFAULT_SLOTS = 5
DECISIONS = ("first_seen", "queued", "skipped", "failed")  # statuses a tick writes with the slot it decided


@dataclass(frozen=True)
class WhyEntry:
    """One scheduled entry of the method on one site: its recent slots' verdicts and its next slot."""

    site: str
    event: str
    method: str
    cron: str
    cron_words: str
    timezone: str
    status: str  # the site's scheduler now: enabled, disabled, maintenance or paused
    slots: list[SlotVerdict]
    next_slot: datetime | None
    problem: str | None = None  # a broken hook entry for the method: it has no slots


def explain(
    bench: Bench, sites: Sequence[str], method: str, conn: redis.Redis, now: datetime, count: int = DEFAULT_SLOTS
) -> list[WhyEntry]:
    """The entries of `method` on `sites`, each with its last `count` slots explained. ConfigError (exit 2)
    when no site schedules the method."""
    bench_settings = load_bench_settings(bench)
    keys = Keys(bench_settings.bench_id)
    spans = read_spans(conn, keys)
    add_bench_apps_to_path(bench.apps_dir)
    found: list[WhyEntry] = []
    for site in sites:
        settings = load_site_settings(bench, site)
        jobs, problems = site_jobs(settings)
        status = SchedulerStatus(
            site, settings.scheduler_enabled, settings.maintenance_mode, bench_settings.scheduler_paused
        ).status
        broken = [str(problem) for problem in problems if _concerns(problem, method)]
        for problem in broken:
            found.append(WhyEntry(site, "", method, "", "", settings.timezone, status, [], None, problem))
        mine = [job for job in jobs if job.method == method]
        if not mine:
            continue
        entries = history.read(conn, keys, site)
        states = read_site_states(conn, keys, site)
        since = _at(entries[-1]["at"]) if len(entries) >= history.HISTORY_LIMIT else None
        zone = zone_info(settings.timezone)
        for job in mine:
            slots = recent_slots(job.cron, now, settings.timezone, count, bench_settings.tick_interval_s)
            records = _records(entries, job.event, method)
            runs = _runs(conn, entries, records.values())
            evidence = Evidence(
                records, runs, spans, states, bench_settings.tick_interval_s, since, "; ".join(broken) or None, zone
            )
            upcoming = next_slot(job.cron, now, settings.timezone)
            verdicts = explain_slots(slots, upcoming, now, evidence)
            words = describe_cron(job.cron)
            entry = WhyEntry(site, job.event, method, job.cron, words, settings.timezone, status, verdicts, upcoming)
            found.append(entry)
    if not found:
        raise ConfigError(
            f"{method!r} is not a scheduled job of {', '.join(sites)}.",
            hint="`bench-jobs show-schedule` lists the scheduled jobs (use the method's dotted path).",
        )
    return found


def _concerns(problem: HookProblem, method: str) -> bool:
    """Whether a hook problem is about the method: it names it (alone or in a table entry), or its app's hooks
    do not load at all."""
    whole_app = problem.value == f"{problem.app}.hooks" and method.startswith(f"{problem.app}.")
    return whole_app or method in problem.value


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _records(entries: list[dict[str, Any]], event: str, method: str) -> dict[datetime, SlotRecord]:
    """The newest decision per slot of the entry (the history is newest first)."""
    records: dict[datetime, SlotRecord] = {}
    for entry in entries:
        if entry.get("method") != method or entry.get("event") != event or "slot" not in entry:
            continue
        if entry["status"] not in DECISIONS:
            continue
        slot = _at(entry["slot"])
        if slot not in records:
            records[slot] = SlotRecord(
                entry["status"],
                _at(entry["at"]),
                entry.get("job_id"),
                entry.get("cause"),
                entry.get("blocked_by"),
                entry.get("reason"),
                entry.get("error"),
            )
    return records


def _runs(conn: redis.Redis, entries: list[dict[str, Any]], records: Any) -> dict[str, RunState]:
    """Each fired or blocking run's status now (RQ's, else its newest outcome in the history, else expired)
    and when it was queued (its fire in the history, on the tick's clock like the skip it is compared with;
    else RQ's enqueued_at; else its slot)."""
    ids = sorted({r.blocked_by or r.job_id for r in records if (r.blocked_by or r.job_id)})
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), "status", "enqueued_at")
        replies = pipe.execute()
    outcomes: dict[str, str] = {}
    fires: dict[str, datetime] = {}
    for entry in entries:
        job_id = entry.get("job_id")
        if not job_id:
            continue
        if entry["status"] in ("started", "finished", "failed") and "slot" not in entry:
            outcomes.setdefault(job_id, entry["status"])
        elif entry["status"] == "queued":
            fires.setdefault(job_id, _at(entry["at"]))
    runs = {}
    for job_id, (status, enqueued_at) in zip(ids, replies, strict=True):
        queued_at = fires.get(job_id) or (utcparse(enqueued_at.decode()) if enqueued_at else slot_of_run(job_id))
        state = status.decode() if status else outcomes.get(job_id, "expired")
        runs[job_id] = RunState(state, queued_at)
    return runs
