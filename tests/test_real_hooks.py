"""Real Frappe apps' scheduling hooks run unchanged (issue 10): the `scheduler_events`, `before_job` and
`after_job` of frappe, erpnext, hrms, crm, helpdesk, lms, insights, payments and press, transcribed as data in
tests/real_hooks/ (each file names its repository and commit), in a bench whose stub modules are generated here
for every method path. What fires is checked tick by tick against Frappe's rules: CRON_MAP, written out in this
file, and croniter, which Frappe reads every cron string with (press's seconds-field crons included, issue 18)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from croniter import croniter
from support import run_cli, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, load_site_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.cron import zone_info
from bench_jobs.core.hooks import KNOWN_EVENTS, load_site_hooks
from bench_jobs.scheduler.tick import Scheduler, site_jobs
from bench_jobs.scheduler.view import read_schedule, trigger

UTC = timezone.utc
DATA = Path(__file__).parent / "real_hooks"
APPS = ("frappe", "erpnext", "hrms", "crm", "helpdesk", "lms", "insights", "payments", "press")
# alpha: the three big apps in UTC; beta: all nine in Berlin. sha1 offsets: alpha.test 48, beta.test 15.
SITE_APPS = {"alpha.test": APPS[:3], "beta.test": APPS}
OFFSETS = {"alpha.test": 48, "beta.test": 15}
ZONES = {"alpha.test": "UTC", "beta.test": "Europe/Berlin"}


def declared(app: str) -> dict[str, object]:
    """The hooks module's names, as the data file declares them."""
    names: dict[str, object] = {}
    exec(compile((DATA / f"{app}.py").read_text(), f"{app}.hooks", "exec"), names)
    return names


def entries(app: str) -> list[tuple[str, str | None, str]]:
    """Every scheduled (event, cron key or None, method) of an app, as Frappe reads its hooks."""
    out: list[tuple[str, str | None, str]] = []
    for event, value in declared(app)["scheduler_events"].items():  # type: ignore[attr-defined]
        if event == "cron":
            for cron, methods in value.items():
                out += [(event, cron, method) for method in ([methods] if isinstance(methods, str) else methods)]
        else:
            out += [(event, None, method) for method in ([value] if isinstance(value, str) else value)]
    return out


def method_paths(app: str) -> set[str]:
    names = declared(app)
    paths = {method for _, _, method in entries(app)}
    for hook in ("before_job", "after_job"):
        value = names.get(hook, [])
        paths |= {value} if isinstance(value, str) else set(value)  # type: ignore[arg-type]
    return paths


def write_stub_apps(apps_dir: Path) -> None:
    """Each app: its hooks.py is the data file, and every method path gets a stub function taking anything."""
    for app in APPS:
        write(apps_dir / app / "__init__.py", "")
        write(apps_dir / app / "hooks.py", (DATA / f"{app}.py").read_text())
        for path in sorted(method_paths(app)):
            module, _, function = path.rpartition(".")
            folder = apps_dir.joinpath(*module.split("."))
            for depth in range(1, len(module.split("."))):
                init = apps_dir.joinpath(*module.split(".")[:depth], "__init__.py")
                if not init.exists():
                    write(init, "")
            init = folder / "__init__.py"
            text = init.read_text() if init.exists() else ""
            write(init, text + f"\n\ndef {function}(*args, **kwargs):\n    return None\n")


@pytest.fixture
def real_bench(bench: Bench) -> Iterator[Bench]:
    write_stub_apps(bench.apps_dir)
    common = bench.common_config_path.read_text().replace('apps = ["sample_app"]\n', "")
    bench.common_config_path.write_text(common)
    for site, apps in SITE_APPS.items():
        write(
            bench.site_config_path(site),
            f'apps = {json.dumps(list(apps))}\ntimezone = "{ZONES[site]}"\nscheduler_enabled = true\n',
        )
    use_bench(bench)
    yield bench
    for module in [m for m in sys.modules if m.split(".")[0] in APPS]:
        del sys.modules[module]


def frappe_cron(event: str, cron: str | None, site: str) -> str:
    """The cron Frappe gives an entry (CRON_MAP; `all` by scheduler_interval 240; maintenance at the offset)."""
    base = event.removesuffix("_long")
    table = {
        "all": "*/4 * * * *",
        "hourly": "0 * * * *",
        "daily": "0 0 * * *",
        "weekly": "0 0 * * 0",
        "monthly": "0 0 1 * *",
        "hourly_maintenance": f"{OFFSETS[site]} * * * *",
        "daily_maintenance": f"{OFFSETS[site]} 0 * * *",
    }
    return cron if cron is not None else table[base]


def frappe_queue(event: str) -> str:
    return "long" if event.endswith(("_long", "_maintenance")) else "default"


def frappe_next(cron: str, local: datetime) -> datetime:
    """Frappe's next execution after naive local wall time `local` (ScheduledJobType: croniter's get_next)."""
    return croniter(cron, local).get_next(datetime)  # type: ignore[no-any-return]


def frappe_fires(cron: str, local: datetime, tick: timedelta = timedelta(minutes=1)) -> bool:
    """Whether Frappe's scheduler, ticking every `tick`, runs the cron in the tick ending at local wall time
    `local`: croniter's next execution after the previous tick is due by now (once, however many times)."""
    return frappe_next(cron, local - tick) <= local


def test_real_hooks_load_with_no_problem_and_doctor_says_so(real_bench: Bench) -> None:
    settings = load_bench_settings(real_bench)
    for apps in SITE_APPS.values():
        hooks = load_site_hooks(apps, settings.queues)
        assert hooks.problems == []
        assert len(hooks.scheduled) == sum(len(entries(app)) for app in apps)
        assert hooks.before_job == ["frappe.recorder.record", "frappe.monitor.start"]
        assert hooks.after_job == [
            "frappe.recorder.dump",
            "frappe.monitor.stop",
            "frappe.utils.file_lock.release_document_locks",
        ]
    assert sum(len(entries(app)) for app in APPS) == 129
    done = run_cli("--site", "all", "doctor", "--json", bench=real_bench)
    checks = {check["name"]: check for check in json.loads(done.stdout)["checks"]}
    for site in SITE_APPS:
        assert checks[f"hooks:{site}"]["ok"], checks[f"hooks:{site}"]
    once = run_cli("schedule", "--once", "--json", bench=real_bench)
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout)["problems"] == []


def test_show_schedule_lists_every_entry_with_frappes_queue_cron_and_next_run(
    real_bench: Bench, redis_client: redis.Redis
) -> None:
    now = datetime(2026, 2, 28, 22, 50, tzinfo=UTC)  # 23:50 in Berlin, the evening before Sunday 1 March
    rows = read_schedule(real_bench, list(SITE_APPS), redis_client, now)
    got = {(row.site, row.event, row.method): row for row in rows}
    expected = {(site, event, method): cron for site, apps in SITE_APPS.items() for app in apps
                for event, cron, method in entries(app)}  # fmt: skip
    assert set(got) == set(expected)
    for (site, event, method), cron in expected.items():
        row = got[(site, event, method)]
        assert row.queue == frappe_queue(event)
        assert row.cron == frappe_cron(event, cron, site)
        local = now.astimezone(zone_info(ZONES[site])).replace(tzinfo=None)
        assert row.next_run.replace(tzinfo=None) == frappe_next(row.cron, local), (site, event, method)
    words = {(row.site, row.event): row.cron_words for row in rows}
    assert words[("alpha.test", "all")] == "every 4 minutes"
    assert words[("alpha.test", "hourly_maintenance")] == "every hour at :48 (this site's maintenance offset: 48 min)"
    assert words[("beta.test", "daily_maintenance")] == "every day at 00:15 (this site's maintenance offset: 15 min)"
    shown = run_cli("--site", "all", "show-schedule", "--json", bench=real_bench)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["jobs"]) == len(expected)


def test_ticks_fire_exactly_what_frappe_would_maintenance_at_each_sites_offset(
    real_bench: Bench, redis_client: redis.Redis
) -> None:
    sched = Scheduler(real_bench, connect(load_bench_settings(real_bench)))
    start = datetime(2026, 2, 28, 22, 58, tzinfo=UTC)  # Berlin's midnight into Sunday 1 March is 23:00 UTC
    first = sched.tick(start - timedelta(minutes=1))
    assert first.problems == [] and first.having("first_seen")
    jobs = {site: site_jobs(load_site_settings(real_bench, site))[0] for site in SITE_APPS}
    seen_maintenance: dict[tuple[str, str], list[datetime]] = {}
    now = start
    while now <= datetime(2026, 3, 1, 1, 0, tzinfo=UTC):
        result = sched.tick(now)
        assert result.problems == []
        due = {(d.site, d.job.key) for d in result.decisions if d.outcome in ("fired", "skipped")}
        assert all(d.slot == now for d in result.decisions if d.outcome in ("fired", "skipped"))
        expected = {
            (site, job.key)
            for site, site_list in jobs.items()
            for job in site_list
            if frappe_fires(frappe_cron(job.event, job.cron if job.event == "cron" else None, site),
                            now.astimezone(zone_info(ZONES[site])).replace(tzinfo=None))
        }  # fmt: skip
        assert due == expected, now
        for d in result.decisions:
            if d.job.event.endswith("_maintenance") and d.outcome in ("fired", "skipped"):
                seen_maintenance.setdefault((d.site, d.job.event), []).append(now)
                assert d.job.queue == "long"
        now += timedelta(minutes=1)
    at = [datetime(2026, 2, 28, 23, 15, tzinfo=UTC), datetime(2026, 2, 28, 23, 48, tzinfo=UTC),
          datetime(2026, 3, 1, 0, 15, tzinfo=UTC), datetime(2026, 3, 1, 0, 48, tzinfo=UTC)]  # fmt: skip
    # Never at :00: each site's maintenance runs at its own offset, after the hour and after local midnight.
    assert {key: sorted(set(times)) for key, times in seen_maintenance.items()} == {
        ("alpha.test", "hourly_maintenance"): [at[1], at[3]],
        ("alpha.test", "daily_maintenance"): [at[3]],  # 00:48 UTC
        ("beta.test", "hourly_maintenance"): [at[0], at[2]],
        ("beta.test", "daily_maintenance"): [at[0]],  # 00:15 in Berlin
    }


@pytest.mark.parametrize("tick_s", [5, 10, 30])
def test_short_ticks_fire_each_entry_on_each_tick_frappe_would(
    real_bench: Bench, redis_client: redis.Redis, tick_s: int
) -> None:
    """With scheduler_tick_interval under 60 s, press's `* * * * * 0/5` fires on each tick it is due, as a
    Frappe scheduler ticking as often would; the minute crons still fire once per minute."""
    sched = Scheduler(real_bench, connect(load_bench_settings(real_bench)))
    start = datetime(2026, 3, 2, 9, 58, tzinfo=UTC)
    assert sched.tick(start - timedelta(seconds=tick_s)).problems == []
    jobs = site_jobs(load_site_settings(real_bench, "beta.test"))[0]
    press_fires = 0
    now = start
    while now < start + timedelta(minutes=4):
        result = sched.tick(now)
        due = {d.job.key for d in result.decisions if d.site == "beta.test" and d.outcome in ("fired", "skipped")}
        local = now.astimezone(zone_info(ZONES["beta.test"])).replace(tzinfo=None)
        expected = {
            job.key
            for job in jobs
            if frappe_fires(frappe_cron(job.event, job.cron if job.event == "cron" else None, "beta.test"),
                            local, timedelta(seconds=tick_s))
        }  # fmt: skip
        assert due == expected, now
        press_fires += "cron|* * * * * 0/5|press.press.doctype.agent_job.agent_job.poll_pending_jobs" in due
        now += timedelta(seconds=tick_s)
    assert press_fires == 4 * 60 // tick_s


def test_trigger_scheduler_event_queues_each_event_and_each_method(
    real_bench: Bench, redis_client: redis.Redis
) -> None:
    declared_events = {event for app in SITE_APPS["alpha.test"] for event, _, _ in entries(app)}
    assert {"hourly_maintenance", "daily_maintenance", "cron", "all", "hourly_long"} <= declared_events
    for event in sorted(declared_events):
        jobs, left_out = trigger(real_bench, ["alpha.test"], event, redis_client)
        want = [m for app in SITE_APPS["alpha.test"] for e, _, m in entries(app) if e == event]
        assert left_out == []
        assert sorted(j.method for j in jobs) == sorted(want), event
        assert {j.queue for j in jobs} == {frappe_queue(event)}
    for app in SITE_APPS["alpha.test"]:
        for event, _, method in entries(app):
            jobs, left_out = trigger(real_bench, ["alpha.test"], method, redis_client)
            assert ([(j.method, j.queue) for j in jobs], left_out) == ([(method, frappe_queue(event))], [])
    assert set(KNOWN_EVENTS) >= declared_events
    assert redis_client.llen("rq:queue:testbench:long") > 0
    done = run_cli("--site", "alpha.test", "trigger-scheduler-event", "daily_maintenance", "--json", bench=real_bench)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["jobs"]) == 7
