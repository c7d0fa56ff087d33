"""`why METHOD` (issue 18): the verdict on each recent slot, as a pure function table-tested against fake time
(a DST night and a paused bench among the rows), and read from what real ticks record in a real Redis."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import redis
from support import run_cli, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.cron import next_slot, recent_slots
from bench_jobs.core.keys import Keys
from bench_jobs.scheduler.tick import Scheduler
from bench_jobs.scheduler.ticks import SiteState, TickSpan, read_spans
from bench_jobs.scheduler.why import Evidence, RunState, SlotRecord, explain_slots
from bench_jobs.scheduler.why_view import explain

UTC = timezone.utc
HOURLY = "sample_app.tasks.hourly"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def span(first: str, last: str, paused: bool = False) -> TickSpan:
    return TickSpan(utc(first), utc(last), paused)


def fired(slot: str, job_id: str) -> tuple[datetime, SlotRecord]:
    return utc(slot), SlotRecord("queued", utc(slot) + timedelta(seconds=1), job_id)


def verdicts(
    cron: str,
    zone: str,
    now: str,
    records: dict[datetime, SlotRecord] | None = None,
    spans: list[TickSpan] | None = None,
    states: list[SiteState] | None = None,
    runs: dict[str, RunState] | None = None,
    problem: str | None = None,
    count: int = 4,
) -> list[tuple[str, str]]:
    """(slot in UTC, decision) for the last `count` slots of `cron` at `now`."""
    at = utc(now)
    evidence = Evidence(records or {}, runs or {}, spans or [], states or [], 60, None, problem)
    found = explain_slots(recent_slots(cron, at, zone, count), next_slot(cron, at, zone), at, evidence)
    return [(v.slot.strftime("%m-%d %H:%M"), v.decision) for v in found]


ALWAYS = [span("2026-01-01T00:00:00", "2026-03-31T00:00:00")]

TABLE = [
    pytest.param(
        dict(
            cron="0 * * * *",
            zone="UTC",
            now="2026-01-05T13:30:00",
            records=dict([fired("2026-01-05T11:00:00", "a"), fired("2026-01-05T13:00:00", "c")]),
            spans=[
                span("2026-01-05T00:00:00", "2026-01-05T11:30:00"),
                span("2026-01-05T13:30:00", "2026-01-05T13:30:00"),
            ],
        ),
        [("01-05 10:00", "unknown"), ("01-05 11:00", "fired"), ("01-05 12:00", "not_seen"), ("01-05 13:00", "fired")],
        id="scheduler down from 11:30 to 13:30: the 12:00 slot was not seen",
    ),
    pytest.param(
        dict(
            cron="0 * * * *",
            zone="UTC",
            now="2026-01-05T13:30:00",
            records=dict([fired("2026-01-05T10:00:00", "a")]),
            spans=[
                span("2026-01-05T00:00:00", "2026-01-05T10:30:00"),
                span("2026-01-05T10:31:00", "2026-01-05T13:30:00", True),
            ],
        ),
        [("01-05 10:00", "fired"), ("01-05 11:00", "skipped"), ("01-05 12:00", "skipped"), ("01-05 13:00", "skipped")],
        id="a paused bench: ticks ran, each slot skipped",
    ),
    pytest.param(
        dict(
            cron="30 2 * * *",
            zone="Europe/Berlin",
            now="2026-03-30T12:00:00",
            # 02:30 does not exist on 29 March in Berlin: the slot is 03:00 CEST, 01:00 UTC, as the gap ends
            records=dict([fired("2026-03-27T01:30:00", "a"), fired("2026-03-29T01:00:00", "c")]),
            spans=[
                span("2026-03-01T00:00:00", "2026-03-28T01:00:00"),
                span("2026-03-29T01:00:00", "2026-03-30T12:00:00"),
            ],
        ),
        [("03-27 01:30", "fired"), ("03-28 01:30", "not_seen"), ("03-29 01:00", "fired"), ("03-30 00:30", "unknown")],
        id="spring-forward night in Berlin: the 02:30 job's slot is the gap's end",
    ),
    pytest.param(
        dict(
            cron="0 * * * *",
            zone="Europe/Berlin",
            now="2026-10-25T02:30:00",
            # 02:00 happens twice on 25 October in Berlin (00:00 and 01:00 UTC); the second pass was missed
            records=dict(
                [
                    fired("2026-10-24T23:00:00", "a"),
                    fired("2026-10-25T00:00:00", "b"),
                    fired("2026-10-25T02:00:00", "d"),
                ]
            ),
            spans=[
                span("2026-10-24T00:00:00", "2026-10-25T00:30:00"),
                span("2026-10-25T02:00:00", "2026-10-25T02:30:00"),
            ],
        ),
        [("10-24 23:00", "fired"), ("10-25 00:00", "fired"), ("10-25 01:00", "not_seen"), ("10-25 02:00", "fired")],
        id="fall-back night in Berlin: the repeated 02:00 is two slots, each explained",
    ),
    pytest.param(
        dict(
            cron="0 * * * *",
            zone="UTC",
            now="2026-01-05T13:00:30",
            records=dict([fired("2026-01-05T12:00:00", "a")]),
            spans=[span("2026-01-05T00:00:00", "2026-01-05T12:59:00")],
        ),
        [("01-05 10:00", "unknown"), ("01-05 11:00", "unknown"), ("01-05 12:00", "fired"), ("01-05 13:00", "pending")],
        id="a slot due seconds ago with no tick since is pending, not missed",
    ),
    pytest.param(
        dict(
            cron="0 * * * *",
            zone="UTC",
            now="2026-01-05T13:30:00",
            records=dict([fired("2026-01-05T10:00:00", "a")]),
            spans=ALWAYS,
            states=[
                SiteState(utc("2026-01-01T00:00:00"), "on"),
                SiteState(utc("2026-01-05T10:30:00"), "disabled"),
                SiteState(utc("2026-01-05T12:30:00"), "maintenance"),
            ],
        ),
        [("01-05 10:00", "fired"), ("01-05 11:00", "skipped"), ("01-05 12:00", "skipped"), ("01-05 13:00", "skipped")],
        id="a site disabled, then in maintenance",
    ),
    pytest.param(
        dict(cron="0 * * * *", zone="UTC", now="2026-01-05T11:30:00", count=2),
        [("01-05 10:00", "not_seen"), ("01-05 11:00", "not_seen")],
        id="no tick ever recorded",
    ),
]


@pytest.mark.parametrize(("given", "expected"), TABLE)
def test_each_slot_gets_the_decision_the_recorded_evidence_shows(given: dict, expected: list) -> None:
    assert verdicts(**given) == expected


def test_a_skip_names_the_run_that_blocked_it_and_how_long_it_had_been_queued() -> None:
    now = utc("2026-01-05T13:30:00")
    skip = SlotRecord("skipped", utc("2026-01-05T13:00:01"), "prev", "previous_queued", "prev")
    records = {**dict([fired("2026-01-05T11:00:00", "prev")]), utc("2026-01-05T12:00:00"): skip}
    records[utc("2026-01-05T13:00:00")] = skip
    runs = {"prev": RunState("queued", utc("2026-01-05T11:00:01"))}
    evidence = Evidence(records, runs, ALWAYS, [], 60)
    found = explain_slots(recent_slots("0 * * * *", now, "UTC", 3), utc("2026-01-05T14:00:00"), now, evidence)
    assert [v.decision for v in found] == ["fired", "skipped", "skipped"]
    assert found[0].job_id == "prev" and found[0].outcome == "queued"
    assert found[2].blocked_by == "prev" and found[2].blocked_for_s == 2 * 3600
    assert "previous run prev still queued for 2 h" in found[2].reason


def test_a_hook_problem_is_the_reason_when_ticks_ran_on_an_enabled_site() -> None:
    states = [SiteState(utc("2026-01-01T00:00:00"), "on")]
    found = verdicts("0 * * * *", "UTC", "2026-01-05T13:30:00", spans=ALWAYS, states=states, problem="bad", count=1)
    assert found == [("01-05 13:00", "skipped")]


# --- from real ticks in a real Redis


def make_scheduler(bench: Bench) -> Scheduler:
    use_bench(bench)
    return Scheduler(bench, connect(load_bench_settings(bench)))


def alpha_hourly(bench: Bench, conn: redis.Redis, now: datetime, count: int = 4) -> list[tuple[str, str, str]]:
    (entry,) = explain(bench, ["alpha.test"], HOURLY, conn, now, count)
    return [(v.slot.strftime("%H:%M"), v.decision, v.reason) for v in entry.slots]


def test_why_reads_first_sighting_fire_skip_and_a_scheduler_gap_from_real_ticks(
    bench: Bench, redis_client: redis.Redis
) -> None:
    sched = make_scheduler(bench)
    sched.tick(utc("2026-01-05T10:30:00"))
    first = sched.tick(utc("2026-01-05T11:00:00"))
    (previous,) = [d.job_id for d in first.fired if d.site == "alpha.test" and d.job.method == HOURLY]
    sched.tick(utc("2026-01-05T12:00:05"))  # the 11:00 run is still queued: the 12:00 slot is skipped
    sched.tick(utc("2026-01-05T15:30:00"))  # down from 12:00 to 15:30: 13:00 and 14:00 never seen
    (entry,) = explain(bench, ["alpha.test"], HOURLY, redis_client, utc("2026-01-05T15:31:00"), 6)
    found = [(v.slot.strftime("%H:%M"), v.decision) for v in entry.slots]
    assert found == [
        ("10:00", "first_seen"),
        ("11:00", "fired"),
        ("12:00", "skipped"),
        ("13:00", "not_seen"),
        ("14:00", "not_seen"),
        ("15:00", "skipped"),  # still blocked by the 11:00 run, queued since
    ]
    fire, skip, gap = entry.slots[1], entry.slots[2], entry.slots[3]
    assert fire.job_id == previous and fire.outcome == "queued"
    assert skip.blocked_by == previous and skip.blocked_for_s == pytest.approx(3605, abs=2)
    assert gap.gap_from == utc("2026-01-05T12:00:05") and gap.gap_to == utc("2026-01-05T15:30:00")
    assert entry.next_slot == utc("2026-01-05T16:00:00")


def test_why_says_the_bench_was_paused_or_the_site_disabled(bench: Bench, redis_client: redis.Redis) -> None:
    sched = make_scheduler(bench)
    for minute in (0, 1, 2, 3, 20, 21):  # a gap of 17 min splits the span
        sched.tick(utc("2026-01-05T10:00:00") + timedelta(minutes=minute))
    update_config_file(bench.common_config_path, {"pause_scheduler": True})
    for minute in range(0, 60, 1):
        sched.tick(utc("2026-01-05T11:00:00") + timedelta(minutes=minute))
    update_config_file(bench.common_config_path, {"pause_scheduler": False})
    update_config_file(bench.site_config_path("alpha.test"), {"scheduler_enabled": False})
    for minute in range(0, 60, 1):
        sched.tick(utc("2026-01-05T12:00:00") + timedelta(minutes=minute))
    found = alpha_hourly(bench, redis_client, utc("2026-01-05T12:59:30"), 2)
    assert found[0][1:] == ("skipped", "the bench was paused (pause_scheduler): ticks ran, nothing fired")
    assert found[1][1:] == ("skipped", "the site's scheduler is disabled")
    assert [(s.first, s.last, s.paused) for s in read_spans(redis_client, Keys("testbench"))] == [
        (utc("2026-01-05T10:00:00"), utc("2026-01-05T10:03:00"), False),
        (utc("2026-01-05T10:20:00"), utc("2026-01-05T10:21:00"), False),
        (utc("2026-01-05T11:00:00"), utc("2026-01-05T11:59:00"), True),
        (utc("2026-01-05T12:00:00"), utc("2026-01-05T12:59:00"), False),
    ]


def test_why_on_the_cli_covers_every_site_as_json_and_exits_1_on_a_missed_slot(bench: Bench) -> None:
    result = run_cli("--site", "all", "why", HOURLY, "--slots", "2", "--json", bench=bench)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert [e["site"] for e in document["entries"]] == ["alpha.test", "beta.test"]
    beta = document["entries"][1]
    assert beta["timezone"] == "Europe/Berlin" and beta["next_slot"].endswith("+01:00")
    assert [s["decision"] for s in beta["slots"]] == ["not_seen", "not_seen"]
    assert "no scheduler tick recorded" in beta["slots"][0]["reason"]
    human = run_cli("--site", "alpha.test", "why", HOURLY, bench=bench)
    assert "next slot" in human.stdout and "not_seen" in human.stdout
    assert "[/]" not in human.stdout and "\\[" not in human.stdout, "styled words, not markup or escapes"


def test_why_for_a_method_no_site_schedules_is_a_usage_error(bench: Bench) -> None:
    result = run_cli("--site", "all", "why", "sample_app.tasks.nope", bench=bench)
    assert result.returncode == 2
    assert "is not a scheduled job" in result.stderr


def test_why_names_a_broken_hook_entry_of_the_method(bench: Bench, redis_client: redis.Redis) -> None:
    write(bench.apps_dir / "broken_app" / "__init__.py", "")
    entry = '{"method": "broken_app.x", "timeout": -1}'
    write(bench.apps_dir / "broken_app" / "hooks.py", f'scheduler_events = {{"hourly": [{entry}]}}\n')
    update_config_file(bench.site_config_path("alpha.test"), {"apps": ["sample_app", "broken_app"]})
    (found,) = explain(bench, ["alpha.test"], "broken_app.x", redis_client, utc("2026-01-05T10:00:00"))
    assert found.problem and "timeout must be whole seconds" in found.problem and found.slots == []
