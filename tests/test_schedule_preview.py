"""`schedule --at TIME --dry-run` (issue 18): what a tick at an instant would fire per site, in its zone, with
the rule that made it due; a daylight-saving night checked before it happens; nothing written to Redis."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import redis
from support import run_cli

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.errors import ConfigError
from bench_jobs.scheduler.preview import parse_time, preview
from bench_jobs.scheduler.tick import Scheduler

HALF_PAST_TWO = "sample_app.tasks.at_half_past_two"


def due(bench: Bench, text: str) -> dict[str, dict[str, str]]:
    """site -> {method: slot in the site's zone}."""
    return {
        site.site: {job.method.rpartition(".")[2]: job.slot.isoformat() for job in site.jobs}
        for site in preview(bench, ["alpha.test", "beta.test"], parse_time(text))
    }


def test_the_spring_forward_night_shows_the_half_past_two_job_firing_as_the_gap_ends(bench: Bench) -> None:
    found = due(bench, "2026-03-29T03:00+02:00")
    assert found["beta.test"]["at_half_past_two"] == "2026-03-29T03:00:00+02:00"
    assert set(found["beta.test"]) == {"at_half_past_two", "hourly", "quarter_hourly", "every_tick", "only_for_beta"}
    assert "at_half_past_two" not in found["alpha.test"]  # 01:00 in UTC
    assert not due(bench, "2026-03-29T02:30+01:00")["beta.test"].get("at_half_past_two")


def test_a_naive_time_is_read_in_each_sites_zone_and_a_time_the_clock_skips_says_so(bench: Bench) -> None:
    given = parse_time("2026-03-29T02:30")
    alpha, beta = preview(bench, ["alpha.test", "beta.test"], given)
    assert alpha.at.isoformat() == "2026-03-29T02:30:00+00:00" and HALF_PAST_TWO in {j.method for j in alpha.jobs}
    assert alpha.note is None
    assert beta.note and "does not exist in Europe/Berlin" in beta.note
    assert beta.at.isoformat() == "2026-03-29T03:30:00+02:00"
    repeated = preview(bench, ["beta.test"], parse_time("2026-10-25T02:00"))[0]
    assert repeated.note and "happens twice" in repeated.note
    assert repeated.at.isoformat() == "2026-10-25T02:00:00+02:00"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-03-29T01:00Z", "2026-03-29T01:00:00+00:00"),
        ("2026-03-29T03:00+02:00", "2026-03-29T01:00:00+00:00"),
        ("2026-03-29T03:00 Europe/Berlin", "2026-03-29T01:00:00+00:00"),
        ("2026-03-29T03:00[Europe/Berlin]", "2026-03-29T01:00:00+00:00"),
    ],
)
def test_time_with_an_offset_or_a_zone_is_one_instant(text: str, utc: str) -> None:
    moment = parse_time(text).moment
    assert moment.astimezone(timezone.utc).isoformat() == utc


@pytest.mark.parametrize("text", ["tomorrow", "2026-03-29T03:00 Mars/Olympus", "2026-03-29T03:00+02:00 UTC"])
def test_an_unreadable_time_is_a_usage_error_naming_the_forms(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_time(text)
    assert raised.value.exit_code == 2


def test_a_site_whose_scheduler_is_off_is_shown_as_not_firing(bench: Bench) -> None:
    bench.site_config_path("alpha.test").write_text('timezone = "UTC"\nscheduler_enabled = false\n')
    (alpha,) = preview(bench, ["alpha.test"], parse_time("2026-01-05T10:00Z"))
    assert alpha.scheduler == "disabled" and not alpha.fires and alpha.jobs


def keyspace(conn: redis.Redis) -> tuple[int, dict[bytes, bytes]]:
    return conn.dbsize(), {key: conn.dump(key) for key in conn.keys("*")}


def test_dry_run_on_the_cli_covers_every_site_as_json_and_writes_nothing_to_redis(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    Scheduler(bench, connect(load_bench_settings(bench))).tick(datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc))
    before = keyspace(redis_client)
    assert before[0] > 0
    result = run_cli("schedule", "--dry-run", "--at", "2026-03-29T03:00+02:00", "--json", bench=bench)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [s["site"] for s in document["sites"]] == ["alpha.test", "beta.test"]
    beta = document["sites"][1]
    assert beta["at"] == "2026-03-29T03:00:00+02:00" and beta["fires"]
    job = next(j for j in beta["jobs"] if j["method"] == HALF_PAST_TWO)
    assert job == {
        "event": "cron",
        "method": HALF_PAST_TWO,
        "queue": "short",
        "cron": "30 2 * * *",
        "cron_words": "every day at 02:30",
        "slot": "2026-03-29T03:00:00+02:00",
    }
    human = run_cli("--site", "beta.test", "schedule", "--dry-run", "--at", "2026-03-29T02:30", bench=bench)
    assert human.returncode == 0 and "does not exist in Europe/Berlin" in human.stdout
    assert "alpha.test" not in human.stdout
    assert keyspace(redis_client) == before


def test_at_without_dry_run_is_a_usage_error(bench: Bench) -> None:
    result = run_cli("schedule", "--at", "2026-03-29T02:30", bench=bench)
    assert result.returncode == 2 and "--at goes with --dry-run" in result.stderr
