"""croniter as the Frappe oracle (issue 18 item 6), and seconds-field crons from a migrated Frappe app
(item 5): doctor warns, and `show-schedule --verbose` notes, where Frappe would fire a hook's cron string at
other times than bench-jobs; a job due several times within a tick fires once per tick, and says so."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import redis
from support import run_cli, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.cron_oracle import FrappeDifference, frappe_difference
from bench_jobs.ops.doctor import run_doctor
from bench_jobs.scheduler.tick import Scheduler
from bench_jobs.scheduler.view import read_schedule

UTC = timezone.utc
BERLIN = "Europe/Berlin"
MIGRATED_CRONS = {
    "* * * * * 0/5": "poll_jobs",  # frappe/press
    "* * * * * 0/30": "collect",  # frappe/press
    "0 9-9 * * *": "at_nine",  # hourly under croniter
    "0 0 */2 * 1": "odd_mondays",  # odd days or Mondays under croniter
}


@pytest.mark.parametrize(
    ("cron", "now", "zone", "horizon_days", "first", "frappe_fires"),
    [
        # croniter reads `9-9` as `*`: hourly from midnight; cron runs it at 09:00.
        ("0 9-9 * * *", "2026-05-06T12:00Z", "UTC", 366, "2026-05-06 00:00", True),
        ("0 9-9 * * *", "2026-05-06T23:30Z", BERLIN, 366, "2026-05-07 00:00", True),  # 01:30 on the 7th in Berlin
        # Day fields: croniter takes `*/2` as a restriction and joins the two with OR; cron (a field starting
        # with `*`) with AND. 1 January 2026 is a Thursday.
        ("0 0 */2 * 1", "2026-01-02T12:00Z", "UTC", 366, "2026-01-03 00:00", True),  # odd, a Saturday
        ("0 0 1 * */2", "2026-01-02T12:00Z", "UTC", 366, "2026-01-03 00:00", True),  # Saturday is weekday 6
        ("0 0 */2 6 1", "2026-01-02T12:00Z", "UTC", 366, "2026-06-03 00:00", True),  # June 1 is an odd Monday
        # Both fire on 5 January (an odd Monday) and differ only on the 7th: a 1-day horizon sees no difference.
        ("0 0 */2 * 1", "2026-01-04T12:00Z", "UTC", 1, None, False),
        # A later hour differs: found by the walk over the first day's hours.
        ("* 0-4,9-9 * * *", "2026-05-06T12:00Z", "UTC", 366, "2026-05-06 05:00", True),
        # The same under both readings.
        ("*/4 * * * *", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("0/5 * * * *", "2026-05-06T12:00Z", BERLIN, 366, None, False),
        ("* * * * * 0/5", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("* * * * * 0/30", "2026-05-06T12:00Z", BERLIN, 366, None, False),
        ("0 0 * * 0", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("0 0 1 * *", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("0 0 13 * 5", "2026-05-06T12:00Z", "UTC", 366, None, False),  # both restricted: OR for both
        ("30 4 1 jan,jul *", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("0 0 L * *", "2026-05-06T12:00Z", "UTC", 366, None, False),
        ("@hourly", "2026-05-06T12:00Z", "UTC", 366, None, False),
    ],
)
def test_frappe_difference_names_the_first_instant_croniter_reads_otherwise(
    cron: str, now: str, zone: str, horizon_days: int, first: str | None, frappe_fires: bool
) -> None:
    found = frappe_difference(cron, datetime.fromisoformat(now), zone, timedelta(days=horizon_days))
    if first is None:
        assert found is None
    else:
        assert found == FrappeDifference(cron, datetime.fromisoformat(first), frappe_fires)


def test_difference_words_name_the_cron_the_instant_and_who_fires() -> None:
    at = datetime(2026, 5, 6, 0, 0)
    assert FrappeDifference("0 9-9 * * *", at, True).words("UTC") == (
        'cron "0 9-9 * * *": Frappe (croniter) would also fire it at 2026-05-06 00:00 (UTC), bench-jobs does not'
    )
    assert FrappeDifference("x", at.replace(second=5), False).words(BERLIN) == (
        'cron "x": bench-jobs fires it at 2026-05-06 00:00:05 (Europe/Berlin), Frappe (croniter) would not'
    )
    refused = FrappeDifference("0 0 * * 5L", None, True, refusal="not acceptable")
    assert "croniter refuses it (not acceptable), so Frappe would not run it" in refused.words("UTC")


@pytest.fixture
def migrated(bench: Bench) -> Bench:
    """alpha.test also runs migrated_app, whose hooks a Frappe site ran: seconds crons and croniter-read ones."""
    write(bench.apps_dir / "migrated_app" / "__init__.py", "")
    write(
        bench.apps_dir / "migrated_app" / "tasks.py",
        "".join(f"def {name}():\n    return None\n\n\n" for name in MIGRATED_CRONS.values()),
    )
    cron = {cron: [f"migrated_app.tasks.{name}"] for cron, name in MIGRATED_CRONS.items()}
    write(bench.apps_dir / "migrated_app" / "hooks.py", f"scheduler_events = {{'cron': {cron!r}}}\n")
    config = bench.site_config_path("alpha.test")
    config.write_text('apps = ["sample_app", "migrated_app"]\n' + config.read_text())
    use_bench(bench)
    return bench


def test_doctor_warns_naming_the_app_the_cron_and_the_first_differing_instant(
    migrated: Bench, redis_client: redis.Redis
) -> None:
    report = run_doctor(migrated, ["alpha.test", "beta.test"], now=datetime(2026, 1, 2, 12, 0, tzinfo=UTC))
    checks = {check.name: check for check in report.checks}
    alpha, beta = checks["frappe-cron:alpha.test"], checks["frappe-cron:beta.test"]
    assert alpha.level == "warning" and alpha.ok
    assert 'migrated_app: cron "0 9-9 * * *": Frappe (croniter) would also fire it at 2026-01-02 00:00 (UTC)' in (
        alpha.detail
    )
    assert 'migrated_app: cron "0 0 */2 * 1": Frappe (croniter) would also fire it at 2026-01-03 00:00' in alpha.detail
    assert "0/5" not in alpha.detail and "0/30" not in alpha.detail and "*/15" not in alpha.detail
    assert "0 9 * * *" in alpha.hint
    assert checks["hooks:alpha.test"].ok
    assert beta.level == "ok" and beta.detail == "2 cron string(s) fire as Frappe (croniter) fires them"


def test_show_schedule_says_once_per_tick_and_verbose_notes_frappes_reading(
    migrated: Bench, redis_client: redis.Redis
) -> None:
    now = datetime(2026, 1, 2, 12, 0, 7, tzinfo=UTC)
    plain = {row.method.rpartition(".")[2]: row for row in read_schedule(migrated, ["alpha.test"], None, now)}
    assert plain["poll_jobs"].cron_words == "every 5 seconds (at most once per scheduler tick: every 60 s)"
    assert plain["collect"].cron_words == "every 30 seconds (at most once per scheduler tick: every 60 s)"
    assert plain["poll_jobs"].next_run == datetime(2026, 1, 2, 12, 0, 10, tzinfo=UTC)
    assert plain["at_nine"].cron_words == 'cron "0 9-9 * * *"' and plain["at_nine"].frappe_note is None
    rows = read_schedule(migrated, ["alpha.test"], None, now, compare_frappe=True)
    notes = {row.method.rpartition(".")[2]: row.frappe_note for row in rows if row.frappe_note}
    assert set(notes) == {"at_nine", "odd_mondays"}
    assert "2026-01-02 00:00 (UTC)" in notes["at_nine"]
    shown = run_cli("--site", "alpha.test", "show-schedule", "--verbose", bench=migrated)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert 'Frappe reads it otherwise: cron "0 9-9 * * *": Frappe (croniter) would also fire it at' in text
    assert re.search(r"\d\d-\d\d \d\d:\d\d:\d\d", text)  # with a seconds cron, times show their seconds
    quiet = run_cli("--site", "alpha.test", "show-schedule", bench=migrated)
    assert "Frappe reads it otherwise" not in quiet.stdout
    as_json = json.loads(run_cli("--site", "alpha.test", "show-schedule", "-v", "--json", bench=migrated).stdout)
    assert {job["method"] for job in as_json["jobs"] if job["frappe_note"]} == {
        "migrated_app.tasks.at_nine",
        "migrated_app.tasks.odd_mondays",
    }


@pytest.mark.parametrize(("tick_s", "poll_fires", "collect_fires"), [(60, 3, 3), (30, 6, 6), (5, 36, 6)])
def test_seconds_crons_fire_once_per_tick_or_on_each_tick_they_are_due(
    migrated: Bench, redis_client: redis.Redis, tick_s: int, poll_fires: int, collect_fires: int
) -> None:
    sched = Scheduler(migrated, connect(load_bench_settings(migrated)))
    start = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert sched.tick(start).problems == []
    due: dict[str, int] = {"poll_jobs": 0, "collect": 0}
    now = start
    for _ in range(180 // tick_s):
        now += timedelta(seconds=tick_s)
        for decision in sched.tick(now).decisions:
            name = decision.job.method.rpartition(".")[2]
            if name in due and decision.outcome in ("fired", "skipped"):
                assert decision.slot == now
                due[name] += 1
    assert due == {"poll_jobs": poll_fires, "collect": collect_fires}
