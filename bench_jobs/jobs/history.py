"""The capped per-site scheduler history in Redis: fires, skips and run outcomes, newest first."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import redis

from ..core.config import SiteSettings
from ..core.keys import Keys

HISTORY_LIMIT = 500  # entries kept per site; at one `all` job and a 60 s tick that is about 2.5 hours
COUNTED_STATUSES = frozenset({"queued", "skipped", "failed", "finished"})  # fires, skips and outcomes, for metrics
# Causes of a skip that count towards a stuck schedule: the previous run is still queued or running.
OVERLAP_CAUSES = frozenset({"previous_queued", "previous_scheduled", "previous_deferred", "previous_started"})
log = logging.getLogger("bench_jobs.scheduler.tick")


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a site's history. `status`: first_seen, queued, skipped, started, finished or failed.
    Entries the tick writes carry the `slot` they decide; a skip also carries its `cause` (`previous_<status>`
    of the run that blocked it, or `site_off`) and that run's id in `blocked_by` (and, as before, `job_id`)."""

    at: str
    site: str
    status: str
    method: str
    event: str | None
    job_id: str | None = None
    slot: str | None = None
    reason: str | None = None
    duration_s: float | None = None
    error: str | None = None
    cause: str | None = None
    blocked_by: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def push(pipe: Any, keys: Keys, site: str, entries: Sequence[HistoryEntry]) -> None:
    """Queue the LPUSH and LTRIM that add `entries` (oldest first) to the site's capped history on `pipe`, the
    HINCRBYs that count fires, skips and outcomes by site and event (the counters the metrics expose), and the
    skip streaks of the entries decided (kept beside the history, which forgets a daily job's skips in hours)."""
    if entries:
        key = keys.history(site)
        pipe.lpush(key, *(entry.to_json() for entry in entries))
        pipe.ltrim(key, 0, HISTORY_LIMIT - 1)
        counts = Counter(
            count_field(entry.status, site, entry.event) for entry in entries if entry.status in COUNTED_STATUSES
        )
        for field, count in counts.items():
            pipe.hincrby(keys.history_counts, field, count)
        _update_streaks(pipe, keys.skip_streaks(site), entries)


def entry_field(event: str | None, method: str) -> str:
    """A scheduled entry's field in the per-site streak and success hashes."""
    return f"{event or ''}|{method}"


def _update_streaks(pipe: Any, key: str, entries: Sequence[HistoryEntry]) -> None:
    """A skip because the previous run never finished lengthens the entry's streak; a fire or a first sighting
    ends it. Other skips (the site's scheduler off) and outcomes leave it as it is."""
    for entry in entries:
        if entry.slot is None:
            continue
        field = entry_field(entry.event, entry.method)
        if entry.status == "skipped" and entry.cause in OVERLAP_CAUSES:
            pipe.hincrby(key, field, 1)
            pipe.hset(key, f"{field}\tby", entry.blocked_by or "")
        elif entry.status in ("queued", "first_seen"):
            pipe.hdel(key, field, f"{field}\tby")


@dataclass(frozen=True)
class EntryHealth:
    """A scheduled entry's skip streak (and the run blocking it) and when a run of it last finished."""

    skips_in_a_row: int = 0
    blocked_by: str | None = None
    last_success: datetime | None = None


def read_health(conn: redis.Redis, keys: Keys, sites: Sequence[str]) -> dict[tuple[str, str], EntryHealth]:
    """(site, `<event>|<method>`) -> its health, for every entry with a streak or a success (one round trip)."""
    with conn.pipeline(transaction=False) as pipe:
        for site in sites:
            pipe.hgetall(keys.skip_streaks(site))
            pipe.hgetall(keys.last_success(site))
        replies = pipe.execute()
    found: dict[tuple[str, str], EntryHealth] = {}
    for index, site in enumerate(sites):
        streaks = {k.decode(): v.decode() for k, v in replies[2 * index].items()}
        successes = {k.decode(): v.decode() for k, v in replies[2 * index + 1].items()}
        for field in {f for f in streaks if "\t" not in f} | set(successes):
            success = successes.get(field)
            found[site, field] = EntryHealth(
                int(streaks.get(field, 0)),
                streaks.get(f"{field}\tby") or None,
                datetime.fromtimestamp(float(success), timezone.utc) if success else None,
            )
    return found


def count_field(status: str, site: str, event: str | None) -> str:
    """The field of `Keys.history_counts` counting `status` entries of `site` and `event` (a site name holds no
    tab; the event comes last, so it may hold anything)."""
    return f"{status}\t{site}\t{event or ''}"


def read_counts(conn: redis.Redis, keys: Keys) -> dict[tuple[str, str, str], int]:
    """(status, site, event) -> how many history entries of that kind were written, ever (one HGETALL)."""
    raw: dict[bytes, bytes] = conn.hgetall(keys.history_counts)  # type: ignore[assignment]
    counts = {}
    for field, value in raw.items():
        parts = field.decode().split("\t", 2)
        if len(parts) == 3:
            counts[parts[0], parts[1], parts[2]] = int(value)
    return counts


def read(conn: redis.Redis, keys: Keys, site: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The site's history, newest first."""
    raw: list[bytes] = conn.lrange(keys.history(site), 0, limit - 1)  # type: ignore[assignment]
    return [json.loads(item) for item in raw]


RUN_STATUSES = ("queued", "started", "finished", "failed")  # a run's entries, in the order it goes through them


def runs(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`entries` (newest first, as `read` gives them) with each run's queued, started and finished or failed
    entries (one job id) merged into one row where its oldest entry was: that entry's `at`, the run's latest
    status, `queued_at`, `started_at`, `ended_at`, its duration (measured by the job, else from its started and
    ended entries) and its error. Skips, first sightings and entries without a job id stay as they are."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("status") in RUN_STATUSES and entry.get("job_id"):
            groups.setdefault(entry["job_id"], []).append(entry)
    rows = []
    for entry in entries:
        group = groups.get(entry.get("job_id") or "") if entry.get("status") in RUN_STATUSES else None
        if group is None:
            rows.append(entry)
        elif entry is group[-1]:
            rows.append(_merged_run(group))
    return rows


def _merged_run(group: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of a run from its entries, newest first."""
    by_status = {entry["status"]: entry for entry in reversed(group)}  # the newest entry of each status wins
    latest = max(group, key=lambda entry: RUN_STATUSES.index(entry["status"]))
    ended = by_status.get("finished") or by_status.get("failed")
    started = by_status.get("started")
    duration = ended.get("duration_s") if ended else None
    if duration is None and ended and started:
        duration = (_parsed(ended["at"]) - _parsed(started["at"])).total_seconds()
    row = {**group[-1], **{k: v for k, v in latest.items() if v is not None}}
    row.update(
        at=group[-1]["at"],
        status=latest["status"],
        slot=next((entry["slot"] for entry in group if entry.get("slot")), None),
        queued_at=by_status["queued"]["at"] if "queued" in by_status else None,
        started_at=started["at"] if started else None,
        ended_at=ended["at"] if ended else None,
        duration_s=duration,
    )
    return row


def _parsed(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def record_outcome(
    settings: SiteSettings,
    event: str,
    method: str,
    status: str,
    duration_s: float | None = None,
    error: str | None = None,
) -> None:
    """Add a scheduled job's started/finished/failed to its site's history (called by the worker's run_job):
    one round trip, LPUSH and LTRIM pipelined, on the connection the job's process already has. Any error is
    logged, never raised: the history must not fail the job it describes."""
    from rq import get_current_job

    from ..core.connection import connect

    try:
        job = get_current_job()
        now = datetime.now(timezone.utc)
        entry = HistoryEntry(
            at=iso(now),
            site=settings.name,
            status=status,
            method=method,
            event=event,
            job_id=job.id if job else None,
            duration_s=None if duration_s is None else round(duration_s, 6),
            error=error,
        )
        keys = Keys(settings.bench.bench_id)
        with connect(settings.bench).pipeline(transaction=False) as pipe:
            push(pipe, keys, settings.name, [entry])
            if status == "finished":
                pipe.hset(keys.last_success(settings.name), entry_field(event, method), int(now.timestamp()))
            pipe.execute()
    except Exception as exc:
        log.warning("could not record %s of %s in the scheduler history: %s", status, method, exc)
