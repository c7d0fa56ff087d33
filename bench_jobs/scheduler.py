"""The scheduler tick as a function of `now`: each enabled site's due slots, claimed exactly once in Redis,
skipped while the previous run is alive, then enqueued; all in a fixed number of pipelined round trips."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from . import schedule_history as history
from .bench import Bench
from .config import SiteSettings, load_bench_settings, load_site_settings
from .errors import BenchJobsError
from .hooks import ScheduledJob, add_bench_apps_to_path, load_site_hooks
from .jobs import PendingJob, build_job, send
from .keys import Keys, scheduled_job_id
from .schedule_history import HistoryEntry, iso
from .timing import SlotCalculator
from .worker import worker_is_alive

log = logging.getLogger("bench_jobs.scheduler")

PAUSED_FIELD = "|paused"  # in a site's last-slots hash while its scheduler is off; never a job key
RECOVER_AFTER_TICKS = 2
RECOVER_AFTER_MIN_S = 30  # a claim not queued this long after it was made is queued by the next leader

# One site's claims and overlap checks, atomically (so two schedulers on the same tick fire a slot once).
# KEYS: last-slots hash, last-runs hash, in-flight hash.
# ARGV: worker-alive key prefix, now and resume cutoff (epoch s), site, then the site's jobs packed in one
#   string (records split by \x1e, fields by \x1f): job key, latest slot (epoch s), RQ job id for that slot
#   and, on a second call only, a verdict on its running previous run ('alive <worker>' / 'dead <worker>').
#   Packing keeps the client's encoding work per site, not per job.
# Only the latest slot is ever compared, so missed slots coalesce into one run. A slot is recorded even when
# skipped, so a skipped job does not fire late. While PAUSED_FIELD is set (the site's scheduler was off),
# slots at or before the cutoff are recorded without firing: a re-enabled site resumes at its next slot.
# Returns one string: a record '<job position> <outcome>' per job that is due or new (not_due is left out):
# 'first_seen', 'paused', 'fired', 'skipped <status> <previous id>', or 'check <worker> <alive value>' when
# the previous run is started on a worker whose alive key still exists; nothing is written for that job and
# the caller asks again with a verdict after checking the worker's process.
CLAIM_LUA = """
local jobs = {}
for record in string.gmatch(ARGV[5], '[^\\030]+') do
  local job = {}
  for value in string.gmatch(record .. '\\031', '([^\\031]*)\\031') do job[#job + 1] = value end
  jobs[#jobs + 1] = job
end
local fields = {'|paused'}
for i, job in ipairs(jobs) do fields[i + 1] = job[1] end
local stored = redis.call('HMGET', KEYS[1], unpack(fields))
local paused, cutoff = stored[1], tonumber(ARGV[3])
local out, slots, due = {}, {}, {}
for i, job in ipairs(jobs) do
  local slot, last = tonumber(job[2]), stored[i + 1]
  if last and tonumber(last) >= slot then
    -- not due
  elseif not last or (paused and slot <= cutoff) then
    if last then out[#out + 1] = i .. ' paused' else out[#out + 1] = i .. ' first_seen' end
    slots[#slots + 1] = job[1]
    slots[#slots + 1] = job[2]
  else
    due[#due + 1] = i
  end
end
local runs, inflight = {}, {}
if #due > 0 then
  local names = {}
  for j, i in ipairs(due) do names[j] = jobs[i][1] end
  local previous = redis.call('HMGET', KEYS[2], unpack(names))
  for j, i in ipairs(due) do
    local key, slot, id, verdict = jobs[i][1], jobs[i][2], jobs[i][3], jobs[i][4] or ''
    local result = 'fired'
    local prev = previous[j]
    if prev then
      local run = redis.call('HMGET', 'rq:job:' .. prev, 'status', 'worker_name')
      local status, worker = run[1], run[2]
      if status == 'queued' or status == 'scheduled' or status == 'deferred' then
        result = 'skipped ' .. status .. ' ' .. prev
      elseif status == 'started' and worker and worker ~= '' then
        local alive = redis.call('GET', ARGV[1] .. worker)
        if alive and verdict == 'alive ' .. worker then
          result = 'skipped started ' .. prev
        elseif alive and verdict ~= 'dead ' .. worker then
          result = 'check ' .. worker .. ' ' .. alive
        end
      end
    end
    out[#out + 1] = i .. ' ' .. result
    if result == 'fired' then
      runs[#runs + 1] = key
      runs[#runs + 1] = id
      inflight[#inflight + 1] = id
      inflight[#inflight + 1] = cjson.encode({site = ARGV[4], key = key, slot = tonumber(slot), at = tonumber(ARGV[2])})
    end
    if string.sub(result, 1, 6) ~= 'check ' then
      slots[#slots + 1] = key
      slots[#slots + 1] = slot
    end
  end
end
if #slots > 0 then redis.call('HSET', KEYS[1], unpack(slots)) end
if #runs > 0 then redis.call('HSET', KEYS[2], unpack(runs)) end
if #inflight > 0 then redis.call('HSET', KEYS[3], unpack(inflight)) end
if paused then redis.call('HDEL', KEYS[1], '|paused') end
return table.concat(out, '\\030')
"""
FIELD, RECORD = "\x1f", "\x1e"

HISTORY_STATUS = {"fired": "queued", "recovered": "queued", "paused": "skipped"}


@dataclass(frozen=True)
class Decision:
    """What the tick did with one job of one site: fired, skipped, first_seen, paused or recovered."""

    site: str
    job: ScheduledJob
    slot: datetime
    outcome: str
    job_id: str | None = None
    reason: str | None = None


@dataclass
class TickResult:
    now: datetime
    sites: int = 0
    decisions: list[Decision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def having(self, outcome: str) -> list[Decision]:
        return [d for d in self.decisions if d.outcome == outcome]

    @property
    def fired(self) -> list[Decision]:
        return self.having("fired")

    @property
    def skipped(self) -> list[Decision]:
        return self.having("skipped")


@dataclass
class _SitePlan:
    """A site's scheduled jobs and what each tick needs of them, rebuilt only when its settings change."""

    settings: SiteSettings
    jobs: list[ScheduledJob]
    problems: list[str]
    crons: tuple[str | None, ...]
    id_stems: list[str]  # a slot's RQ job id is stem + slot epoch (keys.scheduled_job_id)
    last_slots: tuple[int, ...] = ()
    last_packed: str = ""

    def packed(self, slots: tuple[int, ...]) -> str:
        """The jobs with these slots as the claim script's packed argument (reused while slots stay the same)."""
        if slots != self.last_slots:
            self.last_packed = RECORD.join(
                f"{job.key}{FIELD}{slot}{FIELD}{stem}{slot}"
                for job, slot, stem in zip(self.jobs, slots, self.id_stems, strict=True)
            )
            self.last_slots = slots
        return self.last_packed


@dataclass
class _SiteClaim:
    """One site's jobs on one tick: positions into the plan's jobs, their slots, and a packed argument."""

    plan: _SitePlan
    slots: tuple[int, ...]
    packed: str
    positions: list[int] = field(default_factory=list)

    @property
    def site(self) -> str:
        return self.plan.settings.name

    def job_at(self, reply_position: int) -> tuple[ScheduledJob, int, str]:
        """The job, slot and job id of a reply's 1-based position."""
        index = self.positions[reply_position - 1] if self.positions else reply_position - 1
        slot = self.slots[index]
        return self.plan.jobs[index], slot, f"{self.plan.id_stems[index]}{slot}"

    def recheck(self, verdicts: dict[int, str]) -> _SiteClaim:
        """The same claim for the jobs of `verdicts` only (reply position -> verdict), carrying the verdicts."""
        indexes = [self.positions[p - 1] if self.positions else p - 1 for p in verdicts]
        packed = RECORD.join(
            f"{self.plan.jobs[i].key}{FIELD}{self.slots[i]}{FIELD}{self.plan.id_stems[i]}{self.slots[i]}{FIELD}{v}"
            for i, v in zip(indexes, verdicts.values(), strict=True)
        )
        return _SiteClaim(self.plan, self.slots, packed, indexes)


class Scheduler:
    """Ticks one bench. Keeps per-process memos only (site plans, config stamps, paused marks); the truth
    is in Redis."""

    def __init__(self, bench: Bench, conn: redis.Redis) -> None:
        self.bench = bench
        self.conn = conn
        self.bench_settings = load_bench_settings(bench)
        self.keys = Keys(self.bench_settings.bench_id)
        self._claim = conn.register_script(CLAIM_LUA)
        self._plans: dict[str, _SitePlan] = {}
        self._stamps: dict[str, tuple[tuple[int, int, int], SiteSettings]] = {}
        self._marked_paused: set[str] = set()
        add_bench_apps_to_path(bench.apps_dir)

    def tick(self, now: datetime) -> TickResult:
        """Fire every due slot of every enabled site at aware `now`; returns what happened."""
        started = time.perf_counter()
        result = TickResult(now)
        claims, newly_paused = self._collect(now, result)
        self._recover_in_flight(now, result)
        replies = self._run_claims(claims, now, newly_paused)
        checks = self._decide(claims, replies, result)
        if checks:
            self._decide(checks, self._run_claims(checks, now, []), result)
        self._enqueue_and_record(result)
        result.duration_s = time.perf_counter() - started
        return result

    def _collect(self, now: datetime, result: TickResult) -> tuple[list[_SiteClaim], list[str]]:
        """Each enabled site's jobs with their latest slots (each distinct cron and zone computed once)."""
        self.bench_settings = load_bench_settings(self.bench)
        calculator = SlotCalculator(now, self.bench_settings.tick_interval_s)
        slot_memo: dict[tuple[tuple[str | None, ...], str], tuple[int, ...]] = {}
        claims: list[_SiteClaim] = []
        newly_paused: list[str] = []
        for site in self.bench.site_names():
            try:
                settings = self._settings(site)
            except BenchJobsError as exc:
                result.problems.append(f"{site}: {exc.message}")
                continue
            if not settings.scheduler_enabled or settings.maintenance_mode:
                if site not in self._marked_paused:
                    newly_paused.append(site)
                continue
            self._marked_paused.discard(site)
            plan = self._plan(settings)
            result.problems += plan.problems
            if not plan.jobs:
                continue
            result.sites += 1
            memo_key = (plan.crons, settings.timezone)
            slots = slot_memo.get(memo_key)
            if slots is None:
                slots = tuple(int(calculator.latest(cron, settings.timezone).timestamp()) for cron in plan.crons)
                slot_memo[memo_key] = slots
            claims.append(_SiteClaim(plan, slots, plan.packed(slots)))
        return claims, newly_paused

    def _settings(self, site: str) -> SiteSettings:
        """load_site_settings, skipped while the site's file and the bench settings are unchanged: one stat
        per site per tick instead of several path operations and stats."""
        try:
            stat = os.stat(f"{self.bench.sites_dir}/{site}/site_config.toml")
        except FileNotFoundError:
            return load_site_settings(self.bench, site)  # raises ConfigError naming the site
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._stamps.get(site)
        if cached and cached[0] == stamp and cached[1].bench is self.bench_settings:
            return cached[1]
        settings = load_site_settings(self.bench, site)
        self._stamps[site] = (stamp, settings)
        return settings

    def _plan(self, settings: SiteSettings) -> _SitePlan:
        """The site's plan (hooks read by shape, job modules never imported), memoised per settings object."""
        plan = self._plans.get(settings.name)
        if plan is None or plan.settings is not settings:
            hooks = load_site_hooks(settings.apps, settings.bench.queues, import_methods=False)
            jobs = list({job.key: job for job in hooks.scheduled}.values())
            plan = _SitePlan(
                settings,
                jobs,
                [f"{settings.name}: {problem}" for problem in hooks.problems],
                tuple(job.cron for job in jobs),
                [scheduled_job_id(settings.name, job.key, 0)[:-1] for job in jobs],
            )
            self._plans[settings.name] = plan
        return plan

    def _site_jobs(self, settings: SiteSettings) -> list[ScheduledJob]:
        return self._plan(settings).jobs

    def _run_claims(self, claims: Sequence[_SiteClaim], now: datetime, newly_paused: Sequence[str]) -> list[Any]:
        """One pipeline: the claim script for every site, and a paused mark for sites just seen switched off."""
        now_s = int(now.timestamp())
        cutoff_s = now_s - self.bench_settings.tick_interval_s
        alive_prefix = self.keys.worker_alive("")
        with self.conn.pipeline(transaction=False) as pipe:
            for claim in claims:
                keys = [self.keys.last_slots(claim.site), self.keys.last_runs(claim.site), self.keys.in_flight]
                args: list[str | int] = [alive_prefix, now_s, cutoff_s, claim.site, claim.packed]
                self._claim(keys=keys, args=args, client=pipe)
            for site in newly_paused:
                pipe.hset(self.keys.last_slots(site), PAUSED_FIELD, now_s)
            replies = pipe.execute()
        self._marked_paused.update(newly_paused)
        return replies[: len(claims)]

    def _decide(self, claims: Sequence[_SiteClaim], replies: Sequence[Any], result: TickResult) -> list[_SiteClaim]:
        """Turn claim replies into decisions; returns the claims to ask again about runs on live-looking workers."""
        again: list[_SiteClaim] = []
        for claim, reply in zip(claims, replies, strict=True):
            verdicts: dict[int, str] = {}
            for record in reply.decode().split(RECORD) if reply else ():
                position, outcome, detail = [*record.split(" ", 2), ""][:3]
                if outcome == "check":
                    worker, _, alive_value = detail.rpartition(" ")
                    verdicts[int(position)] = f"{'alive' if worker_is_alive(alive_value) else 'dead'} {worker}"
                else:
                    result.decisions.append(self._decision(claim, int(position), outcome, detail))
            if verdicts:
                again.append(claim.recheck(verdicts))
        return again

    @staticmethod
    def _decision(claim: _SiteClaim, position: int, outcome: str, detail: str) -> Decision:
        site, (job, slot_s, job_id) = claim.site, claim.job_at(position)
        slot = datetime.fromtimestamp(slot_s, timezone.utc)
        if outcome == "fired":
            return Decision(site, job, slot, outcome, job_id)
        if outcome == "skipped":
            status, _, previous = detail.partition(" ")
            what = "running on a live worker" if status == "started" else status
            return Decision(site, job, slot, outcome, previous, f"previous run {previous} is still {what}")
        if outcome == "paused":
            return Decision(site, job, slot, outcome, reason="missed while the site's scheduler was off")
        return Decision(site, job, slot, outcome)

    def _enqueue_and_record(self, result: TickResult) -> None:
        """Queue every fired run in one pipeline, then clear their in-flight marks and write the history."""
        pending: list[PendingJob] = []
        errors: dict[str, str] = {}
        sent = [d for d in result.decisions if d.outcome in ("fired", "recovered")]
        for decision in sent:
            assert decision.job_id is not None
            try:
                pending.append(self._build(decision.site, decision.job, decision.job_id, decision.outcome))
            except BenchJobsError as exc:
                errors[decision.job_id] = exc.message
                result.problems.append(f"{decision.site}: {decision.job.method}: {exc.message}")
        # Separate sends: jobs.send fails when a deduplicated job precedes a plain one in its pipeline.
        send(self.conn, [item for item in pending if not item.deduplicate])
        send(self.conn, [item for item in pending if item.deduplicate])
        at = iso(result.now)
        entries: dict[str, list[HistoryEntry]] = {}
        for d in result.decisions:
            status = HISTORY_STATUS.get(d.outcome, d.outcome)
            error = errors.get(d.job_id or "")
            entries.setdefault(d.site, []).append(
                HistoryEntry(
                    at, d.site, "failed" if error else status, d.job.method, d.job.event, d.job_id, iso(d.slot),
                    d.reason, error=error,
                )
            )  # fmt: skip
        with self.conn.pipeline(transaction=False) as pipe:
            if sent:
                pipe.hdel(self.keys.in_flight, *(d.job_id for d in sent if d.job_id))
            for site, site_entries in entries.items():
                history.push(pipe, self.keys, site, site_entries)
            pipe.execute()

    def _build(self, site: str, job: ScheduledJob, job_id: str, outcome: str) -> PendingJob:
        """The RQ job of one fired slot; a recovered claim is sent deduplicated, in case it was queued after all."""
        settings = load_site_settings(self.bench, site)
        queue, rq_job = build_job(
            self.conn, settings, job.method, {}, queue=job.queue, timeout_s=job.timeout_s, rq_job_id=job_id,
            event=job.event,
        )  # fmt: skip
        return PendingJob(queue, rq_job, at_front=False, deduplicate=outcome == "recovered")

    def _recover_in_flight(self, now: datetime, result: TickResult) -> None:
        """Re-queue runs claimed but never queued (their scheduler died between claim and send): one HGETALL
        per tick; a claim counts as lost only when it is older than any tick that is still running."""
        raw: dict[bytes, bytes] = self.conn.hgetall(self.keys.in_flight)  # type: ignore[assignment]
        limit_s = max(RECOVER_AFTER_TICKS * self.bench_settings.tick_interval_s, RECOVER_AFTER_MIN_S)
        claims = {k.decode(): json.loads(v) for k, v in raw.items()}
        stale = {job_id: c for job_id, c in claims.items() if c["at"] < now.timestamp() - limit_s}
        if not stale:
            return
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in stale:
                pipe.exists(f"rq:job:{job_id}")
            exists = pipe.execute()
        settled = []
        for (job_id, claim), present in zip(stale.items(), exists, strict=True):
            job = None if present else self._find_job(claim["site"], claim["key"])
            if job is None:
                settled.append(job_id)
                continue
            slot = datetime.fromtimestamp(claim["slot"], timezone.utc)
            reason = "claimed but never queued by a scheduler that stopped"
            result.decisions.append(Decision(claim["site"], job, slot, "recovered", job_id, reason))
        if settled:
            self.conn.hdel(self.keys.in_flight, *settled)

    def _find_job(self, site: str, key: str) -> ScheduledJob | None:
        try:
            jobs = self._site_jobs(self._settings(site))
        except BenchJobsError:
            return None
        return next((job for job in jobs if job.key == key), None)
