"""The scheduler tick as a function of `now`: each enabled site's due slots, claimed exactly once in Redis,
skipped while the previous run is alive, then queued; all in a fixed number of pipelined round trips."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import redis

from ..core.bench import Bench
from ..core.config import SiteSettings, load_bench_settings, load_site_settings
from ..core.cron import SlotCalculator
from ..core.hooks import HookProblem, ScheduledJob, add_bench_apps_to_path, load_site_hooks
from ..core.keys import Keys, scheduled_job_id
from ..errors import BenchJobsError
from ..jobs import history as history
from ..jobs.enqueue import build_job
from ..jobs.history import HistoryEntry, iso
from ..jobs.liveness import worker_is_alive
from .claims import Claimer, SiteClaim, SitePlan, parse_reply
from .sending import ClaimedRun, ClaimedRunSender
from .ticks import TickRecorder

log = logging.getLogger("bench_jobs.scheduler.tick")

SENT_OUTCOMES = ("fired", "recovered")
HISTORY_STATUS = {"fired": "queued", "recovered": "queued", "paused": "skipped"}


@dataclass(frozen=True)
class Decision:
    """What the tick did with one job of one site: fired, skipped, first_seen, paused, recovered,
    sent_elsewhere (claimed here, but another scheduler queued it first after this one stalled), or waiting
    (undecided: its previous run started before Redis restarted; see liveness.py)."""

    site: str
    job: ScheduledJob
    slot: datetime
    outcome: str
    job_id: str | None = None
    reason: str | None = None
    cause: str | None = None  # of a skip: `previous_<status>` of the run still alive, or `site_off`


@dataclass
class TickResult:
    now: datetime
    sites: int = 0
    decisions: list[Decision] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    paused: bool = False  # the bench's scheduler is paused (pause_scheduler): nothing was looked at
    site_states: dict[str, str] = field(default_factory=dict)  # site -> on, disabled or maintenance

    def having(self, outcome: str) -> list[Decision]:
        return [d for d in self.decisions if d.outcome == outcome]

    @property
    def fired(self) -> list[Decision]:
        return self.having("fired")

    @property
    def skipped(self) -> list[Decision]:
        return self.having("skipped")


def site_jobs(settings: SiteSettings) -> tuple[list[ScheduledJob], list[HookProblem]]:
    """The site's scheduled jobs, read from hooks by shape (job modules are not imported), each once however
    often its apps list it, on the crons they run on in this site; and the problems of those hooks (their
    broken entries are left out)."""
    hooks = load_site_hooks(settings.apps, settings.bench.queues, import_methods=False)
    interval_s = settings.bench.scheduler_interval_s
    jobs = {job.key: job.for_site(settings.name, interval_s) for job in hooks.scheduled}
    return list(jobs.values()), list(hooks.problems)


def site_state(settings: SiteSettings) -> str:
    """`on`, `disabled` (the site's scheduler_enabled is off; it wins) or `maintenance`."""
    if not settings.scheduler_enabled:
        return "disabled"
    return "maintenance" if settings.maintenance_mode else "on"


class Scheduler:
    """Ticks one bench. Keeps per-process memos only (site plans, config stamps, paused marks); the truth
    is in Redis."""

    def __init__(self, bench: Bench, conn: redis.Redis) -> None:
        self.bench = bench
        self.conn = conn
        self.bench_settings = load_bench_settings(bench)
        self.keys = Keys(self.bench_settings.bench_id)
        self.claimer = Claimer(conn, self.keys)
        self.sender = ClaimedRunSender(conn, self.keys)
        self.recorder = TickRecorder(conn, self.keys)
        self._plans: dict[str, SitePlan] = {}
        self._stamps: dict[str, tuple[tuple[int, int, int], SiteSettings]] = {}
        self._marked_paused: set[str] = set()
        add_bench_apps_to_path(bench.apps_dir)

    def tick(self, now: datetime) -> TickResult:
        """Fire every due slot of every enabled site at aware `now`; returns what happened."""
        started = time.perf_counter()
        result = TickResult(now)
        self.bench_settings = load_bench_settings(self.bench)
        if self.bench_settings.scheduler_paused:
            # Frappe's pause_scheduler. Nothing is claimed or recorded, so a pause is a gap like a stopped
            # scheduler: on resume each job fires at most once, for its latest slot, never once per missed slot.
            result.paused = True
            with self.conn.pipeline(transaction=False) as pipe:
                self._record_tick(pipe, result)
                pipe.execute()
            result.duration_s = time.perf_counter() - started
            return result
        claims, newly_paused = self._collect(now, result)
        unsendable = self._recover(now, result)
        replies = self._run_claims(claims, now, newly_paused, lambda pipe: self._record_tick(pipe, result))
        checks = self._decide(claims, replies, result)
        if checks:
            self._decide(checks, self._run_claims(checks, now, []), result)
        self._send_and_record(result, unsendable)
        result.duration_s = time.perf_counter() - started
        return result

    def _collect(self, now: datetime, result: TickResult) -> tuple[list[SiteClaim], list[str]]:
        """Each enabled site's jobs with their latest slots, and the sites just seen switched off."""
        calculator = SlotCalculator(now)
        slot_memo: dict[tuple[tuple[str, ...], str], tuple[int, ...]] = {}
        claims: list[SiteClaim] = []
        newly_paused: list[str] = []
        for site in self.bench.site_names():
            try:
                settings = self._settings(site)
                result.site_states[site] = site_state(settings)
                if not settings.scheduler_enabled or settings.maintenance_mode:
                    if site not in self._marked_paused:
                        newly_paused.append(site)
                    continue
                self._marked_paused.discard(site)
                claim = self._site_claim(settings, calculator, slot_memo, result)
            except BenchJobsError as exc:
                result.problems.append(f"{site}: {exc.message}")
                continue
            except Exception as exc:  # one site's bad cron or zone must not stop the others
                result.problems.append(f"{site}: no job fires: {type(exc).__name__}: {exc}")
                continue
            if claim is not None:
                claims.append(claim)
        return claims, newly_paused

    def _site_claim(
        self,
        settings: SiteSettings,
        calculator: SlotCalculator,
        slot_memo: dict[tuple[tuple[str, ...], str], tuple[int, ...]],
        result: TickResult,
    ) -> SiteClaim | None:
        """An enabled site's claim for this tick (None when it has no scheduled job); each distinct (crons,
        zone) is computed once per tick."""
        plan = self._plan(settings)
        result.problems += plan.problems
        if not plan.jobs:
            return None
        memo_key = (plan.crons, settings.timezone)
        slots = slot_memo.get(memo_key)
        if slots is None:
            slots = tuple(int(calculator.latest(cron, settings.timezone).timestamp()) for cron in plan.crons)
            slot_memo[memo_key] = slots
        result.sites += 1
        return SiteClaim(plan, slots, plan.packed(slots))

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

    def _plan(self, settings: SiteSettings) -> SitePlan:
        """The site's plan, memoised per settings object."""
        plan = self._plans.get(settings.name)
        if plan is None or plan.settings is not settings:
            jobs, problems = site_jobs(settings)
            plan = SitePlan(
                settings,
                jobs,
                [f"{settings.name}: {problem}" for problem in problems],
                tuple(job.cron for job in jobs),
                [scheduled_job_id(settings.bench.bench_id, settings.name, job.key, 0)[:-1] for job in jobs],
            )
            self._plans[settings.name] = plan
        return plan

    def _run_claims(
        self,
        claims: Sequence[SiteClaim],
        now: datetime,
        newly_paused: Sequence[str],
        also: Callable[[Any], None] | None = None,
    ) -> list[Any]:
        now_s = int(now.timestamp())
        replies = self.claimer.run(claims, now_s, now_s - self.bench_settings.tick_interval_s, newly_paused, also)
        self._marked_paused.update(newly_paused)
        return replies

    def _record_tick(self, pipe: Any, result: TickResult) -> None:
        """Queue this tick on its span and the site state changes it saw (scheduler/ticks.py, read by `why`)."""
        self.recorder.record(pipe, result.now, result.paused, self.bench_settings.tick_interval_s)
        self.recorder.record_states(pipe, result.now, result.site_states)

    def _decide(self, claims: Sequence[SiteClaim], replies: Sequence[Any], result: TickResult) -> list[SiteClaim]:
        """Turn claim replies into decisions; returns the claims to ask again about runs on live-looking workers."""
        again: list[SiteClaim] = []
        for claim, reply in zip(claims, replies, strict=True):
            verdicts: dict[int, str] = {}
            for position, outcome, detail in parse_reply(reply):
                if outcome == "check":
                    worker, _, alive_value = detail.rpartition(" ")
                    verdicts[position] = f"{'alive' if worker_is_alive(alive_value) else 'dead'} {worker}"
                else:
                    result.decisions.append(self._decision(claim, position, outcome, detail))
            if verdicts:
                again.append(claim.recheck(verdicts))
        return again

    @staticmethod
    def _decision(claim: SiteClaim, position: int, outcome: str, detail: str) -> Decision:
        site, (job, slot_s, job_id) = claim.site, claim.job_at(position)
        slot = datetime.fromtimestamp(slot_s, timezone.utc)
        if outcome == "fired":
            return Decision(site, job, slot, outcome, job_id)
        if outcome == "skipped":
            status, _, previous = detail.partition(" ")
            what = "running on a live worker" if status == "started" else status
            reason = f"previous run {previous} is still {what}"
            return Decision(site, job, slot, outcome, previous, reason, cause=f"previous_{status}")
        if outcome == "paused":
            reason = "missed while the site's scheduler was off"
            return Decision(site, job, slot, outcome, reason=reason, cause="site_off")
        if outcome == "waiting":
            reason = f"previous run {detail} started before Redis restarted; its worker has not shown it is alive yet"
            return Decision(site, job, slot, outcome, detail, reason)
        return Decision(site, job, slot, outcome)

    def _send_and_record(self, result: TickResult, unsendable: list[str]) -> None:
        """Queue every fired and recovered run whose in-flight mark is still there (one pipeline), then write
        the history and drop the marks of runs that cannot be built (another)."""
        runs: list[ClaimedRun] = []
        sending: list[Decision] = []
        errors: dict[str, str] = {}
        for decision in (d for d in result.decisions if d.outcome in SENT_OUTCOMES):
            assert decision.job_id is not None
            try:
                runs.append(self._build(decision))
                sending.append(decision)
            except BenchJobsError as exc:
                errors[decision.job_id] = exc.message
                result.problems.append(f"{decision.site}: {decision.job.method}: {exc.message}")
        queued = self.sender.send(runs)
        elsewhere = {d.job_id for d, sent in zip(sending, queued, strict=True) if not sent}
        if elsewhere:
            reason = "another scheduler queued this claimed run while this one stalled"
            result.decisions = [
                dataclasses.replace(d, outcome="sent_elsewhere", reason=reason)
                if d.job_id in elsewhere and d.outcome in SENT_OUTCOMES
                else d
                for d in result.decisions
            ]
        at = iso(result.now)
        entries: dict[str, list[HistoryEntry]] = {}
        for d in result.decisions:
            if d.outcome in ("sent_elsewhere", "waiting"):
                continue  # the scheduler that queued it recorded it; a later tick decides a waiting one
            error = errors.get(d.job_id or "")
            status = "failed" if error else HISTORY_STATUS.get(d.outcome, d.outcome)
            blocked_by = d.job_id if d.outcome == "skipped" else None
            entry = HistoryEntry(
                at, d.site, status, d.job.method, d.job.event, d.job_id, iso(d.slot), d.reason,
                error=error, cause=d.cause, blocked_by=blocked_by,
            )  # fmt: skip
            entries.setdefault(d.site, []).append(entry)
        with self.conn.pipeline(transaction=False) as pipe:
            self.sender.drop(pipe, [*unsendable, *errors])
            for site, site_entries in entries.items():
                history.push(pipe, self.keys, site, site_entries)
            pipe.execute()

    def _build(self, decision: Decision) -> ClaimedRun:
        """The RQ job of one fired or recovered slot."""
        assert decision.job_id is not None
        job = decision.job
        queue, rq_job = build_job(
            self.conn, self._settings(decision.site), job.method, {}, queue=job.queue, timeout_s=job.timeout_s,
            rq_job_id=decision.job_id, event=job.event,
        )  # fmt: skip
        return ClaimedRun(queue, rq_job)

    def _recover(self, now: datetime, result: TickResult) -> list[str]:
        """Decide to send the runs claimed but not queued within the recovery limit (their scheduler died or
        stalled); returns the in-flight marks whose site or job is gone, to drop."""
        gone = []
        for claim in self.sender.stale(now, self.bench_settings.tick_interval_s):
            job = self._find_job(claim.site, claim.key) if claim.site else None
            if job is None:
                gone.append(claim.job_id)
                continue
            slot = datetime.fromtimestamp(claim.slot_s, timezone.utc)
            reason = "claimed but not queued by a scheduler that stopped or stalled"
            result.decisions.append(Decision(claim.site, job, slot, "recovered", claim.job_id, reason))
        return gone

    def _find_job(self, site: str, key: str) -> ScheduledJob | None:
        try:
            jobs = self._plan(self._settings(site)).jobs
        except BenchJobsError:
            return None
        return next((job for job in jobs if job.key == key), None)
