"""Why a scheduled entry did or did not run at each of its recent slots: a pure function of the slots and of
what the scheduler recorded (its decisions in the history, its tick spans, the site's state changes), so it
is table-tested against fake time. Reading that evidence from Redis is why_view.py's job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

from .ticks import SiteState, TickSpan

# decisions
FIRED, SKIPPED, NOT_SEEN, FIRST_SEEN, FAILED, PENDING, UNKNOWN = (
    "fired",
    "skipped",
    "not_seen",
    "first_seen",
    "failed",
    "pending",
    "unknown",
)
PENDING_TICKS = 2  # a slot younger than this many ticks with no tick yet waits for one, it is not missed
STATE_WORDS = {"disabled": "the site's scheduler is disabled", "maintenance": "the site is in maintenance mode"}


@dataclass(frozen=True)
class SlotRecord:
    """A tick's decision on one slot, as the history keeps it."""

    status: str  # first_seen, queued, skipped or failed (could not be queued)
    at: datetime
    job_id: str | None = None
    cause: str | None = None
    blocked_by: str | None = None
    reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunState:
    """What is known now of one run: its status (RQ's, else its newest outcome in the history, else
    `expired`) and when it was queued."""

    status: str
    queued_at: datetime | None = None


@dataclass(frozen=True)
class Evidence:
    """Everything the scheduler kept that bears on one entry of one site."""

    records: Mapping[datetime, SlotRecord]  # slot (UTC) -> decision
    runs: Mapping[str, RunState]  # job id -> state, for fired and blocking runs
    spans: Sequence[TickSpan]  # oldest first
    site_states: Sequence[SiteState]  # oldest first
    tick_interval_s: int
    history_since: datetime | None = None  # the oldest entry the site's capped history still holds
    problem: str | None = None  # the entry's hook problem now, if any
    zone: tzinfo = timezone.utc  # the site's, for the times in the reasons


@dataclass(frozen=True)
class SlotVerdict:
    """The decision on one slot, with its reason in words and the facts behind it."""

    slot: datetime
    decision: str
    reason: str
    job_id: str | None = None  # the run it fired
    outcome: str | None = None  # that run's status now
    blocked_by: str | None = None  # the previous run that made it skip
    blocked_for_s: float | None = None  # how long that run had been queued or running when the slot was skipped
    gap_from: datetime | None = None  # not seen: the last tick before the slot (None: none recorded)
    gap_to: datetime | None = None  # not seen: the first tick after it (None: none since)


def explain_slots(slots: Sequence[datetime], next_slot: datetime, now: datetime, ev: Evidence) -> list[SlotVerdict]:
    """A verdict per slot (oldest first); each slot's window runs to the next slot, or to `now`."""
    ends = [*slots[1:], next_slot]
    first_seen = min((slot for slot, r in ev.records.items() if r.status == FIRST_SEEN), default=None)
    return [_verdict(slot, min(end, now), now, ev, first_seen) for slot, end in zip(slots, ends, strict=True)]


def _verdict(slot: datetime, end: datetime, now: datetime, ev: Evidence, first_seen: datetime | None) -> SlotVerdict:
    record = ev.records.get(slot)
    if record is not None:
        return _recorded(slot, record, ev)
    covering = [span for span in ev.spans if span.first < end and span.last >= slot]
    if not covering:
        return _unseen(slot, end, now, ev)
    running = [span for span in covering if not span.paused]
    if not running:
        return SlotVerdict(slot, SKIPPED, "the bench was paused (pause_scheduler): ticks ran, nothing fired")
    state = _state_at(ev.site_states, max(slot, running[0].first))
    if state in STATE_WORDS:
        return SlotVerdict(slot, SKIPPED, STATE_WORDS[state])
    if first_seen is not None and slot < first_seen:
        reason = f"before the scheduler first saw this entry (at its slot {_at(first_seen, ev)})"
        return SlotVerdict(slot, UNKNOWN, reason)
    if ev.problem:
        return SlotVerdict(slot, SKIPPED, f"a hook problem: {ev.problem}")
    if ev.history_since is not None and slot < ev.history_since:
        return SlotVerdict(slot, UNKNOWN, "older than the site's history keeps (its newest entries only)")
    return SlotVerdict(slot, UNKNOWN, "ticks ran but recorded no decision (the entry was not in the hooks then?)")


def _recorded(slot: datetime, record: SlotRecord, ev: Evidence) -> SlotVerdict:
    if record.status == "queued":
        run = ev.runs.get(record.job_id or "")
        outcome = run.status if run else "expired"
        return SlotVerdict(slot, FIRED, f"fired {record.job_id} ({outcome})", record.job_id, outcome)
    if record.status == FIRST_SEEN:
        return SlotVerdict(slot, FIRST_SEEN, "first seen: its slot recorded, it fires from the next one")
    if record.status == FAILED:
        return SlotVerdict(slot, FAILED, f"due, but could not be queued: {record.error or record.reason}")
    if record.cause == "site_off":
        state = _state_at(ev.site_states, record.at)
        why = STATE_WORDS.get(state or "", "the site's scheduler was off (disabled or in maintenance)")
        return SlotVerdict(slot, SKIPPED, f"{why}; the latest slot missed meanwhile is not run late")
    blocker = record.blocked_by or record.job_id
    overlap = (record.cause or "").startswith("previous_") or "previous run" in (record.reason or "")
    if blocker and overlap:
        run = ev.runs.get(blocker)
        age_s = (record.at - run.queued_at).total_seconds() if run and run.queued_at else None
        status = (record.cause or "").removeprefix("previous_") or "queued or running"
        what = "still running" if status == "started" else f"still {status}"
        reason = f"previous run {blocker} {what}" + (f" for {duration_words(age_s)}" if age_s is not None else "")
        if run:
            reason += f" (now {run.status})"
        return SlotVerdict(slot, SKIPPED, reason, blocked_by=blocker, blocked_for_s=age_s)
    return SlotVerdict(slot, SKIPPED, record.reason or "skipped")


def _unseen(slot: datetime, end: datetime, now: datetime, ev: Evidence) -> SlotVerdict:
    before = [span.last for span in ev.spans if span.last < slot]
    after = [span.first for span in ev.spans if span.first >= end]
    if not ev.spans:
        return SlotVerdict(slot, NOT_SEEN, "no scheduler tick recorded at all: is `bench-jobs schedule` running?")
    if not before and ev.spans[0].first > slot:
        return SlotVerdict(slot, UNKNOWN, f"before the oldest recorded tick ({_at(ev.spans[0].first, ev)})")
    gap_from = max(before) if before else None
    gap_to = min(after) if after else None
    if gap_to is None and end == now and (now - slot).total_seconds() < PENDING_TICKS * ev.tick_interval_s:
        return SlotVerdict(slot, PENDING, "due; the next tick decides")
    down = f"from {_at(gap_from, ev)}" if gap_from else "before it"
    up = f"until {_at(gap_to, ev)}" if gap_to else "and has not ticked since"
    length = f" ({duration_words((gap_to - gap_from).total_seconds())})" if gap_from and gap_to else ""
    reason = f"no tick covered it: the scheduler was down {down} {up}{length}"
    return SlotVerdict(slot, NOT_SEEN, reason, gap_from=gap_from, gap_to=gap_to)


def _state_at(states: Sequence[SiteState], moment: datetime) -> str | None:
    """The site's state in force at `moment` (None when none was recorded by then)."""
    found = None
    for state in states:
        if state.since > moment:
            break
        found = state.state
    return found


def _at(moment: datetime, ev: Evidence) -> str:
    return moment.astimezone(ev.zone).isoformat(timespec="seconds")


def duration_words(seconds: float) -> str:
    """`3 d 4 h`, `2 h 5 min`, `4 min 10 s`, `12 s`: the two largest units."""
    total = int(max(seconds, 0))
    units = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if total >= size or (name == "s" and not parts):
            parts.append(f"{total // size} {name}")
            total %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
