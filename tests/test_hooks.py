"""Apps' hooks into validated job specs; broken entries reported with app, event and value (DESIGN 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import SAMPLE_APPS, write

from bench_jobs.core.hooks import add_bench_apps_to_path, load_app_hooks, load_site_hooks

QUEUES = ("short", "default", "long")


@pytest.fixture
def apps_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "apps"
    folder.mkdir()
    add_bench_apps_to_path(folder)
    return folder


def make_app(apps_dir: Path, name: str, hooks: str, tasks: str = "def job():\n    pass\n") -> str:
    write(apps_dir / name / "__init__.py", "")
    write(apps_dir / name / "hooks.py", hooks)
    write(apps_dir / name / "tasks.py", tasks)
    return name


def test_frappe_style_events_map_to_crons_and_queues(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SAMPLE_APPS))
    hooks = load_site_hooks(["sample_app"], QUEUES)
    assert hooks.problems == []
    got = {(job.event, job.method.rsplit(".", 1)[1]): (job.cron, job.queue, job.timeout_s) for job in hooks.scheduled}
    assert got == {
        ("all", "every_tick"): ("*/4 * * * *", "default", None),
        ("hourly", "hourly"): ("0 * * * *", "default", None),
        ("daily", "daily"): ("0 0 * * *", "default", None),
        ("weekly", "weekly"): ("0 0 * * 0", "default", None),
        ("monthly", "monthly"): ("0 0 1 * *", "default", None),
        ("yearly", "yearly"): ("0 0 1 1 *", "default", None),
        ("daily_long", "daily_long"): ("0 0 * * *", "long", 2000),
        ("cron", "quarter_hourly"): ("*/15 * * * *", "default", None),
        ("cron", "at_half_past_two"): ("30 2 * * *", "short", None),
    }
    assert hooks.before_job == ["sample_app.tasks.before"]
    assert hooks.after_job == ["sample_app.tasks.after"]
    assert hooks.doc_types == {"Invoice": "sample_app.tasks.Invoice"}


def test_every_frappe_event_kind_and_long_variants(apps_dir: Path) -> None:
    events = ["all", "hourly", "daily", "weekly", "monthly", "yearly", "annual"]
    body = ", ".join(f'"{e}": ["ev_app.tasks.job"], "{e}_long": ["ev_app.tasks.job"]' for e in events)
    make_app(
        apps_dir, "ev_app", "scheduler_events = {" + body + ', "cron_long": {"0 3 * * 1-5": ["ev_app.tasks.job"]}}'
    )
    hooks = load_app_hooks("ev_app")
    assert hooks.problems == ()
    by_event = {job.event: (job.cron, job.queue) for job in hooks.scheduled}
    assert by_event["annual"] == ("0 0 1 1 *", "default")
    assert by_event["annual_long"] == ("0 0 1 1 *", "long")
    assert by_event["hourly_long"] == ("0 * * * *", "long")
    assert by_event["all_long"] == ("*/4 * * * *", "long")
    assert by_event["cron_long"] == ("0 3 * * 1-5", "long")
    assert len(hooks.scheduled) == 15


def test_invalid_entries_are_reported_and_never_hide_the_rest(apps_dir: Path) -> None:
    make_app(
        apps_dir,
        "bad_app",
        "scheduler_events = {\n"
        '  "daily": ["bad_app.tasks.job", "bad_app.tasks.missing", "not a path", 42],\n'
        '  "fortnightly": ["bad_app.tasks.job"],\n'
        '  "cron": {"61 * * * *": ["bad_app.tasks.job"], "* * *": ["bad_app.tasks.job"],'
        ' "*/5 * * * *": ["bad_app.tasks.job", {"method": "bad_app.tasks.job", "timeout": 0}]},\n'
        '  "hourly": [{"method": "bad_app.tasks.needs_arg"}, {"path": "x"}],\n'
        "}\n"
        'before_job = ["bad_app.tasks.nope"]\n',
        tasks="def job():\n    pass\n\ndef needs_arg(record_id):\n    pass\n",
    )
    hooks = load_app_hooks("bad_app")
    good = [(job.event, job.cron) for job in hooks.scheduled]
    assert good == [("daily", "0 0 * * *"), ("cron", "*/5 * * * *")]
    found = {(p.event, p.value): p.message for p in hooks.problems}
    assert all(p.app == "bad_app" for p in hooks.problems)
    assert "no function 'missing'" in found[("daily", "bad_app.tasks.missing")]
    assert "dotted path" in found[("daily", "not a path")]
    assert "dotted path" in found[("daily", "42")]
    assert "known events" in found[("fortnightly", "fortnightly")]
    assert "not a valid cron" in found[("cron", "61 * * * *")]
    assert "5 fields" in found[("cron", "* * *")]
    assert "record_id" in found[("hourly", "bad_app.tasks.needs_arg")]
    assert "no function 'nope'" in found[("before_job", "bad_app.tasks.nope")]
    assert any("timeout" in message for (event, _), message in found.items() if event == "cron")
    assert any("method (required)" in message for (event, _), message in found.items() if event == "hourly")
    assert str(hooks.problems[0]).startswith("bad_app.hooks daily: ")


def test_a_cron_that_never_matches_a_date_is_a_problem_and_its_job_is_dropped(apps_dir: Path) -> None:
    make_app(
        apps_dir,
        "never_app",
        'scheduler_events = {"cron": {"0 0 31 2 *": ["never_app.tasks.job"], "0 0 28 2 *": ["never_app.tasks.job"]}}',
    )
    hooks = load_app_hooks("never_app")
    assert [job.cron for job in hooks.scheduled] == ["0 0 28 2 *"]
    (problem,) = hooks.problems
    assert (problem.app, problem.event, problem.value) == ("never_app", "cron", "0 0 31 2 *")
    assert "never matches a real date" in problem.message


def test_a_broken_app_is_reported_and_other_apps_still_load(apps_dir: Path) -> None:
    make_app(apps_dir, "good_app", 'scheduler_events = {"hourly": ["good_app.tasks.job"]}')
    make_app(apps_dir, "crashing_app", "raise RuntimeError('hooks exploded')")
    hooks = load_site_hooks(["crashing_app", "missing_app", "good_app"], QUEUES)
    assert [job.method for job in hooks.scheduled] == ["good_app.tasks.job"]
    messages = {p.app: p.message for p in hooks.problems}
    assert "hooks exploded" in messages["crashing_app"]
    assert "not installed" in messages["missing_app"]


def test_a_job_on_an_undeclared_queue_is_a_problem(apps_dir: Path) -> None:
    make_app(apps_dir, "q_app", 'scheduler_events = {"hourly": [{"method": "q_app.tasks.job", "queue": "reports"}]}')
    hooks = load_site_hooks(["q_app"], QUEUES)
    assert hooks.scheduled == []
    assert "unknown queue 'reports'" in hooks.problems[0].message
    assert load_site_hooks(["q_app"], (*QUEUES, "reports")).scheduled[0].queue == "reports"


def test_shape_only_loading_does_not_import_job_modules(apps_dir: Path) -> None:
    make_app(
        apps_dir,
        "lazy_app",
        'scheduler_events = {"hourly": ["lazy_app.tasks.job"]}',
        tasks="raise RuntimeError('imported')\n",
    )
    hooks = load_app_hooks("lazy_app", import_methods=False)
    assert hooks.problems == ()
    assert "lazy_app.tasks" not in sys.modules


def test_frappe_layout_apps_are_importable(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    write(apps / "nested_app" / "nested_app" / "__init__.py", "")
    write(
        apps / "nested_app" / "nested_app" / "hooks.py",
        'scheduler_events = {"daily": ["nested_app.hooks.x"]}\ndef x():\n    pass\n',
    )
    add_bench_apps_to_path(apps)
    assert load_app_hooks("nested_app").scheduled[0].method == "nested_app.hooks.x"


def test_a_single_value_stands_for_a_list_of_one_as_in_frappe(apps_dir: Path) -> None:
    make_app(
        apps_dir,
        "single_app",
        "scheduler_events = {\n"
        '  "daily": "single_app.tasks.job",\n'
        '  "hourly": {"method": "single_app.tasks.job", "queue": "short"},\n'
        '  "cron": {"0 9-9 * * *": "single_app.tasks.job"},\n'
        "}\n"
        'before_job = "single_app.tasks.job"\n'
        'after_job = "single_app.tasks.job"\n',
    )
    hooks = load_app_hooks("single_app")
    assert hooks.problems == ()
    assert [(job.event, job.cron, job.queue) for job in hooks.scheduled] == [
        ("daily", "0 0 * * *", "default"),
        ("hourly", "0 * * * *", "short"),
        ("cron", "0 9-9 * * *", "default"),
    ]
    assert hooks.before_job == hooks.after_job == ("single_app.tasks.job",)


def test_maintenance_events_go_to_the_long_queue_at_the_site_offset(apps_dir: Path) -> None:
    make_app(
        apps_dir,
        "care_app",
        'scheduler_events = {"hourly_maintenance": ["care_app.tasks.job"], "daily_maintenance": ["care_app.tasks.job"],'
        ' "all": ["care_app.tasks.job"]}',
    )
    hooks = load_app_hooks("care_app")
    assert hooks.problems == ()
    jobs = {job.event: job for job in hooks.scheduled}
    assert {event: job.queue for event, job in jobs.items()} == {
        "hourly_maintenance": "long",
        "daily_maintenance": "long",
        "all": "default",
    }
    # sha1("alpha.test") % 60 == 48: Frappe's offset, applied.
    assert jobs["hourly_maintenance"].for_site("alpha.test", 240).cron == "48 * * * *"
    assert jobs["daily_maintenance"].for_site("alpha.test", 240).cron == "48 0 * * *"
    assert jobs["daily_maintenance"].for_site("beta.test", 240).cron == "15 0 * * *"
    assert jobs["all"].for_site("alpha.test", 300).cron == "*/5 * * * *"
    # The job's identity does not move with the offset or the interval.
    assert jobs["all"].for_site("alpha.test", 300).key == jobs["all"].key
    assert jobs["daily_maintenance"].for_site("beta.test", 240).key == jobs["daily_maintenance"].key
