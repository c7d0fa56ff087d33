"""The scheduler tick against a real Redis with `now` passed in (DESIGN 5): slots, claims, overlap, DST."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import utcformat
from support import make_bench, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys, scheduled_job_id
from bench_jobs.jobs import history as schedule_history
from bench_jobs.jobs.liveness import alive_value
from bench_jobs.scheduler.leader import Lease
from bench_jobs.scheduler.tick import Scheduler, TickResult

UTC = timezone.utc
KEYS = Keys("testbench")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_scheduler(bench: Bench) -> Scheduler:
    use_bench(bench)
    return Scheduler(bench, connect(load_bench_settings(bench)))


@pytest.fixture
def sched(bench: Bench) -> Scheduler:
    return make_scheduler(bench)


def fired(result: TickResult) -> set[tuple[str, str]]:
    return {(d.site, d.job.method) for d in result.fired}


def outcomes(result: TickResult, outcome: str) -> set[tuple[str, str]]:
    return {(d.site, d.job.method) for d in result.having(outcome)}


def queued(conn: redis.Redis, queue: str = "default") -> list[str]:
    return [job_id.decode() for job_id in conn.lrange(f"rq:queue:testbench:{queue}", 0, -1)]


def site_history(conn: redis.Redis, site: str) -> list[dict[str, object]]:
    return schedule_history.read(conn, KEYS, site)


def set_site(bench: Bench, site: str, text: str) -> None:
    write(bench.site_config_path(site), text)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


HOURLY = {("alpha.test", "sample_app.tasks.hourly"), ("beta.test", "sample_app.tasks.hourly")}
HOURLY_ALL = HOURLY | {("beta.test", "other_app.tasks.only_for_beta")}


def test_a_job_seen_for_the_first_time_records_its_slot_and_does_not_fire(
    sched: Scheduler, redis_client: redis.Redis
) -> None:
    result = sched.tick(utc("2026-01-05T10:20:00"))
    assert not result.fired
    assert ("alpha.test", "sample_app.tasks.hourly") in outcomes(result, "first_seen")
    assert queued(redis_client) == []
    slots = redis_client.hgetall(KEYS.last_slots("alpha.test"))
    assert len(slots) == 9
    assert {entry["status"] for entry in site_history(redis_client, "alpha.test")} == {"first_seen"}


def test_each_slot_fires_once_with_an_id_derived_from_site_job_and_slot(
    sched: Scheduler, redis_client: redis.Redis
) -> None:
    sched.tick(utc("2026-01-05T10:20:00"))
    result = sched.tick(utc("2026-01-05T11:00:00"))
    hourly = [d for d in result.fired if d.job.event == "hourly"]
    assert {(d.site, d.job.method) for d in hourly} == HOURLY_ALL
    for decision in hourly:
        slot_s = int(utc("2026-01-05T11:00:00").timestamp())
        assert decision.job_id == scheduled_job_id("testbench", decision.site, decision.job.key, slot_s)
        assert decision.job_id in queued(redis_client)
        job = Job.fetch(decision.job_id, connection=redis_client, serializer=JSONSerializer)
        assert job.kwargs["event"] == "hourly" and job.kwargs["method"] == decision.job.method
    assert not {d for d in sched.tick(utc("2026-01-05T11:00:00")).fired if d.job.event == "hourly"}
    assert not {d for d in sched.tick(utc("2026-01-05T11:00:40")).fired}
    assert len(queued(redis_client)) == len(set(queued(redis_client)))


def test_a_scheduler_stopped_for_three_hours_fires_an_hourly_job_once(
    sched: Scheduler, redis_client: redis.Redis
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    result = sched.tick(utc("2026-01-05T13:30:05"))
    hourly = [d for d in result.fired if d.job.event == "hourly"]
    assert {(d.site, d.job.method) for d in hourly} == HOURLY_ALL
    assert {d.slot for d in hourly} == {utc("2026-01-05T13:00:00")}
    assert len(result.fired) == len(fired(result))
    assert not [d for d in sched.tick(utc("2026-01-05T13:59:00")).fired if d.job.event == "hourly"]


def test_a_new_job_does_not_fire_on_the_tick_it_first_appears(sched: Scheduler, bench: Bench) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    set_site(bench, "alpha.test", 'apps = ["sample_app", "other_app"]\ntimezone = "UTC"\nscheduler_enabled = true\n')
    result = sched.tick(utc("2026-01-05T11:00:00"))
    assert ("alpha.test", "other_app.tasks.only_for_beta") in outcomes(result, "first_seen")
    assert ("alpha.test", "sample_app.tasks.hourly") in fired(result)
    assert ("alpha.test", "other_app.tasks.only_for_beta") in fired(sched.tick(utc("2026-01-05T12:00:00")))


def test_racing_schedulers_fire_each_slot_exactly_once(bench: Bench, redis_client: redis.Redis) -> None:
    make_scheduler(bench).tick(utc("2026-01-05T10:30:00"))
    racers = [
        Scheduler(bench, redis.Redis(unix_socket_path=redis_client.connection_pool.connection_kwargs["path"]))
        for _ in range(4)
    ]
    barrier = threading.Barrier(len(racers))
    results: list[TickResult] = []

    def race(racer: Scheduler) -> None:
        barrier.wait()
        results.append(racer.tick(utc("2026-01-05T11:00:00")))

    threads = [threading.Thread(target=race, args=(racer,)) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    all_fired = [d.job_id for result in results for d in result.fired]
    assert len(all_fired) == len(set(all_fired)) == 2 * 2 + 3  # all + */15 per site, three hourly
    assert sorted(queued(redis_client)) == sorted(all_fired)


# (zone, day, {cron: [UTC instants it fires from 22:00 local the day before to 06:00 local the day after]})
DST_TABLE = [
    (
        "America/New_York", "2026-03-08",
        {"30 2 * * *": ["03-08T07:00", "03-09T06:30"], "30 1 * * *": ["03-08T06:30", "03-09T05:30"],
         "daily": ["03-08T05:00", "03-09T04:00"]},
    ),
    (
        "America/New_York", "2026-11-01",
        {"30 2 * * *": ["11-01T07:30", "11-02T07:30"], "30 1 * * *": ["11-01T05:30", "11-02T06:30"],
         "daily": ["11-01T04:00", "11-02T05:00"]},
    ),
    (
        "Europe/Berlin", "2026-03-29",
        {"30 2 * * *": ["03-29T01:00", "03-30T00:30"], "30 1 * * *": ["03-29T00:30", "03-29T23:30"],
         "daily": ["03-28T23:00", "03-29T22:00"]},
    ),
    (
        "Europe/Berlin", "2026-10-25",
        {"30 2 * * *": ["10-25T00:30", "10-26T01:30"], "30 1 * * *": ["10-24T23:30", "10-26T00:30"],
         "daily": ["10-24T22:00", "10-25T23:00"]},
    ),
    (
        "Asia/Kolkata", "2026-03-08",
        {"30 2 * * *": ["03-07T21:00", "03-08T21:00"], "30 1 * * *": ["03-07T20:00", "03-08T20:00"],
         "daily": ["03-07T18:30", "03-08T18:30"]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "day", "expected"), DST_TABLE, ids=[f"{z}-{d}" for z, d, _ in DST_TABLE])
def test_dst_days_fire_each_local_time_once(
    tmp_path: Path, redis_server: object, redis_client: redis.Redis, zone: str, day: str, expected: dict[str, list[str]]
) -> None:
    bench = make_bench(tmp_path / "bench", redis_server.url)  # type: ignore[attr-defined]
    write(
        bench.apps_dir / "dst_app" / "hooks.py",
        'scheduler_events = {"daily": ["dst_app.jobs.daily"], '
        '"cron": {"30 2 * * *": ["dst_app.jobs.half_two"], "30 1 * * *": ["dst_app.jobs.half_one"]}}\n',
    )
    write(bench.apps_dir / "dst_app" / "__init__.py", "")
    for site in ("alpha.test", "beta.test"):
        bench.site_config_path(site).unlink()
    set_site(bench, "zone.test", f'apps = ["dst_app"]\ntimezone = "{zone}"\nscheduler_enabled = true\n')
    sched = make_scheduler(bench)
    start = datetime.fromisoformat(day).replace(tzinfo=__import__("zoneinfo").ZoneInfo(zone)) - timedelta(hours=2)
    now, end = start.astimezone(UTC), (start + timedelta(hours=32)).astimezone(UTC)
    fires: dict[str, list[str]] = {"30 2 * * *": [], "30 1 * * *": [], "daily": []}
    while now <= end:
        for decision in sched.tick(now).fired:
            name = decision.job.cron if decision.job.event == "cron" else decision.job.event
            fires[name or ""].append(decision.slot.strftime("%m-%dT%H:%M"))
            redis_client.hset(f"rq:job:{decision.job_id}", "status", "finished")  # as a worker would
        now += timedelta(minutes=15)
    assert fires == expected


def test_a_queued_previous_run_is_skipped_the_skip_recorded_and_the_slot_not_fired_late(
    sched: Scheduler, redis_client: redis.Redis
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    first = sched.tick(utc("2026-01-05T11:00:00"))
    (previous,) = [d.job_id for d in first.fired if d.site == "alpha.test" and d.job.event == "hourly"]
    result = sched.tick(utc("2026-01-05T12:00:00"))
    assert ("alpha.test", "sample_app.tasks.hourly") in outcomes(result, "skipped")
    history = site_history(redis_client, "alpha.test")
    skip = next(e for e in history if e["status"] == "skipped" and e["method"] == "sample_app.tasks.hourly")
    assert previous in str(skip["reason"]) and "queued" in str(skip["reason"])
    redis_client.hset(f"rq:job:{previous}", "status", "finished")
    assert ("alpha.test", "sample_app.tasks.hourly") not in fired(sched.tick(utc("2026-01-05T12:30:00")))
    assert ("alpha.test", "sample_app.tasks.hourly") in fired(sched.tick(utc("2026-01-05T13:00:00")))


@pytest.mark.parametrize(
    ("alive_value", "blocks"),
    [(alive_value(os.getpid()), True), (alive_value(dead_pid()), False), (None, False)],
    ids=["live-worker", "killed-worker-key-not-yet-expired", "worker-key-expired"],
)
def test_a_run_on_a_live_worker_blocks_and_a_dead_workers_run_never_does(
    sched: Scheduler, redis_client: redis.Redis, alive_value: str | None, blocks: bool
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    first = sched.tick(utc("2026-01-05T11:00:00"))
    (previous,) = [d.job_id for d in first.fired if d.site == "alpha.test" and d.job.event == "hourly"]
    redis_client.hset(f"rq:job:{previous}", mapping={"status": "started", "worker_name": "w1"})
    if alive_value:
        redis_client.set(KEYS.worker_alive("w1"), alive_value, ex=15)
    result = sched.tick(utc("2026-01-05T12:00:00"))
    job = ("alpha.test", "sample_app.tasks.hourly")
    assert (job in outcomes(result, "skipped")) is blocks
    assert (job in fired(result)) is not blocks


def test_after_a_redis_restart_a_run_started_before_it_leaves_the_slot_undecided(restarted_bench: Bench) -> None:
    """The previous run's worker may still be running it, its alive key gone with the restart: the slot is
    neither fired nor skipped but left for a later tick, which fires it once that run is judged dead."""
    sched = make_scheduler(restarted_bench)
    conn = sched.conn
    sched.tick(utc("2026-01-05T10:30:00"))
    first = sched.tick(utc("2026-01-05T11:00:00"))
    (previous,) = [d.job_id for d in first.fired if d.site == "alpha.test" and d.job.event == "hourly"]
    before = utcformat(datetime.now(UTC) - timedelta(minutes=2))
    conn.hset(f"rq:job:{previous}", mapping={"status": "started", "worker_name": "w1", "started_at": before})
    job = ("alpha.test", "sample_app.tasks.hourly")
    waiting = sched.tick(utc("2026-01-05T12:00:00"))
    assert job in outcomes(waiting, "waiting") and job not in fired(waiting) | outcomes(waiting, "skipped")
    history = site_history(conn, "alpha.test")
    noon = [e for e in history if e["method"] == job[1] and str(e.get("slot", "")).startswith("2026-01-05T12")]
    assert not noon, "nothing is recorded for an undecided slot"
    conn.hset(f"rq:job:{previous}", "started_at", utcformat(datetime.now(UTC) + timedelta(seconds=5)))
    assert job in fired(sched.tick(utc("2026-01-05T12:00:00"))), "the undecided slot fires once judged"


def test_disabled_and_maintenance_sites_fire_nothing_and_resume_at_their_next_slot(
    sched: Scheduler, bench: Bench
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    set_site(bench, "alpha.test", 'timezone = "UTC"\nscheduler_enabled = false\n')
    set_site(
        bench, "beta.test", 'apps = ["sample_app", "other_app"]\nscheduler_enabled = true\nmaintenance_mode = true\n'
    )
    assert not sched.tick(utc("2026-01-05T11:00:00")).decisions
    assert not sched.tick(utc("2026-01-05T12:00:00")).decisions
    set_site(bench, "alpha.test", 'timezone = "UTC"\nscheduler_enabled = true\n')
    set_site(bench, "beta.test", 'apps = ["sample_app", "other_app"]\nscheduler_enabled = true\n')
    resumed = sched.tick(utc("2026-01-05T12:20:00"))
    assert not [d for d in resumed.fired if d.job.event == "hourly"]
    assert ("alpha.test", "sample_app.tasks.hourly") in outcomes(resumed, "paused")
    assert {
        (d.site, d.job.method) for d in sched.tick(utc("2026-01-05T13:00:00")).fired if d.job.event == "hourly"
    } == HOURLY_ALL


def test_a_paused_bench_ticks_but_fires_nothing_and_resumes_with_one_run_per_job(
    sched: Scheduler, bench: Bench, redis_client: redis.Redis
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    update_config_file(bench.common_config_path, {"pause_scheduler": True})
    for hour in ("11", "12", "13"):
        paused = sched.tick(utc(f"2026-01-05T{hour}:00:00"))
        assert not paused.decisions and paused.paused
    assert queued(redis_client) == [] and queued(redis_client, "long") == []
    update_config_file(bench.common_config_path, {"pause_scheduler": False})
    resumed = sched.tick(utc("2026-01-05T13:20:00"))
    assert not resumed.paused
    hourly = [d for d in resumed.fired if d.job.event == "hourly"]
    assert {(d.site, d.job.method) for d in hourly} == HOURLY_ALL and len(hourly) == len(HOURLY_ALL)
    assert {d.slot for d in hourly} == {utc("2026-01-05T13:00:00")}, "only the latest missed slot fires"
    fired_ids = [d.job_id for d in resumed.fired]
    assert len(fired_ids) == len(set(fired_ids)), "one run per job, not one per missed slot"
    assert not [d for d in sched.tick(utc("2026-01-05T13:25:00")).fired if d.job.event == "hourly"]


def test_a_claim_whose_scheduler_died_before_queueing_is_queued_by_a_later_tick(
    sched: Scheduler, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))

    def crash(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sched.sender, "send", crash)
    with pytest.raises(KeyboardInterrupt):
        sched.tick(utc("2026-01-05T11:00:00"))
    monkeypatch.undo()
    assert queued(redis_client) == [] and redis_client.hlen(KEYS.in_flight) == 7
    assert not sched.tick(utc("2026-01-05T11:00:10")).having("recovered")
    later = sched.tick(utc("2026-01-05T11:02:30"))
    recovered = {d.job_id for d in later.having("recovered")}
    assert len(recovered) == 7 and recovered <= set(queued(redis_client)) | set(queued(redis_client, "short"))
    assert redis_client.hlen(KEYS.in_flight) == 0


def test_a_scheduler_that_stalls_after_claiming_never_queues_a_run_another_one_recovered(
    bench: Bench, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled, other = make_scheduler(bench), make_scheduler(bench)
    stalled.tick(utc("2026-01-05T10:30:00"))
    paused: list[tuple[TickResult, list[str]]] = []
    monkeypatch.setattr(stalled, "_send_and_record", lambda *args: paused.append(args))
    claimed = stalled.tick(utc("2026-01-05T11:00:00"))  # claims, then stalls before sending
    claimed_ids = {d.job_id for d in claimed.fired}
    assert len(claimed_ids) == 7 and redis_client.hlen(KEYS.in_flight) == 7

    recovered = other.tick(utc("2026-01-05T11:02:30"))
    assert {d.job_id for d in recovered.having("recovered")} == claimed_ids
    sent = queued(redis_client) + queued(redis_client, "short")
    assert claimed_ids <= set(sent) and len(sent) == len(set(sent))
    for queue in ("default", "short"):  # a worker runs them all; result_ttl = 0 deletes each job at once
        redis_client.delete(f"rq:queue:testbench:{queue}")
    redis_client.delete(*(f"rq:job:{job_id}" for job_id in claimed_ids))

    Scheduler._send_and_record(stalled, *paused[0])  # the stalled scheduler wakes up and sends
    assert queued(redis_client) == [] and queued(redis_client, "short") == []
    assert {d.job_id for d in claimed.having("sent_elsewhere")} == claimed_ids and not claimed.fired
    queued_entries = [
        e["job_id"]
        for site in ("alpha.test", "beta.test")
        for e in site_history(redis_client, site)
        if e["status"] == "queued"
    ]
    # Each run recorded once, by the scheduler that sent it.
    assert sorted(job_id for job_id in queued_entries if job_id in claimed_ids) == sorted(claimed_ids)


def test_of_two_sends_of_one_claimed_run_only_the_first_queues_it(
    bench: Bench, sched: Scheduler, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    monkeypatch.setattr(sched, "_send_and_record", lambda *args: None)
    runs = [sched._build(d) for d in sched.tick(utc("2026-01-05T11:00:00")).fired]
    assert sched.sender.send(runs) == [True] * 7
    assert make_scheduler(bench).sender.send(runs) == [False] * 7
    assert len(queued(redis_client)) + len(queued(redis_client, "short")) == 7
    assert redis_client.hlen(KEYS.in_flight) == 0


def test_a_nothing_due_tick_costs_a_few_redis_commands_per_site(sched: Scheduler, redis_client: redis.Redis) -> None:
    sched.tick(utc("2026-01-05T10:30:00"))
    before = int(redis_client.info("stats")["total_commands_processed"])
    result = sched.tick(utc("2026-01-05T10:30:30"))
    commands = int(redis_client.info("stats")["total_commands_processed"]) - before - 1
    assert not result.decisions
    # in-flight check, script check; the tick's span (EVALSHA, LINDEX, LSET); per site one EVALSHA and its HMGET
    assert commands <= 2 + 3 + 2 * 2


def test_the_history_keeps_the_newest_entries_up_to_its_cap(redis_client: redis.Redis) -> None:
    entries = [schedule_history.HistoryEntry(str(i), "alpha.test", "queued", "m.f", "hourly") for i in range(600)]
    with redis_client.pipeline() as pipe:
        schedule_history.push(pipe, KEYS, "alpha.test", entries)
        pipe.execute()
    kept = schedule_history.read(redis_client, KEYS, "alpha.test", limit=1000)
    assert len(kept) == schedule_history.HISTORY_LIMIT and kept[0]["at"] == "599"


def test_one_leader_at_a_time_and_only_the_holder_renews_or_releases(redis_client: redis.Redis) -> None:
    first, second = Lease(redis_client, KEYS, 1), Lease(redis_client, KEYS, 1)
    assert first.hold() and not second.hold()
    assert 0 < second.free_in_s <= 1.5
    second.release()
    assert not second.hold() and first.hold()
    first.release()
    assert second.hold() and not first.hold()


def test_a_lease_not_renewed_expires_for_a_standby(redis_client: redis.Redis) -> None:
    first, second = Lease(redis_client, KEYS, 1), Lease(redis_client, KEYS, 1)
    assert first.hold()
    redis_client.pexpire(KEYS.leader, 1)
    redis_client.get("x")  # let the expiry pass
    import time

    time.sleep(0.01)
    assert second.hold() and not first.hold()
