"""Frappe's operator commands and options (issue 11): scheduler status/pause/resume, set-maintenance-mode, use,
set-config, show-config, ready-for-migration, --version, completion, --site after the command, key typos."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from typing import Any

import pytest
from support import cli_env, run_cli, write

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import read_toml
from bench_jobs.core.context import use_bench
from bench_jobs.core.version import __version__


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def clean_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def statuses(bench: Bench, *args: str) -> dict[str, str]:
    document = ok_json(run_cli(*args, "scheduler", "status", "--json", bench=bench))
    return {row["site"]: row["status"] for row in document["sites"]}


def test_scheduler_status_shows_enabled_disabled_maintenance_and_paused_per_site(bench: Bench) -> None:
    assert statuses(bench) == {"alpha.test": "enabled", "beta.test": "enabled"}
    assert run_cli("--site", "beta.test", "set-maintenance-mode", "on", bench=bench).returncode == 0
    assert statuses(bench) == {"alpha.test": "enabled", "beta.test": "maintenance"}
    assert run_cli("scheduler", "pause", bench=bench).returncode == 0
    assert statuses(bench) == {"alpha.test": "paused", "beta.test": "maintenance"}
    assert run_cli("--site", "alpha.test", "disable-scheduler", bench=bench).returncode == 0
    assert statuses(bench, "--site", "alpha.test") == {"alpha.test": "disabled"}
    human = run_cli("scheduler", "status", bench=bench)
    assert human.returncode == 0 and "alpha.test: disabled" in human.stdout and "beta.test: maintenance" in human.stdout


def test_scheduler_status_shows_the_default_site_and_every_site_with_site_all(bench: Bench) -> None:
    """As DESIGN's site selection: currentsite.txt is the default; --site all (or no default) is every site."""
    assert statuses(bench) == {"alpha.test": "enabled", "beta.test": "enabled"}  # no default site: all
    assert run_cli("use", "beta.test", bench=bench).returncode == 0
    assert statuses(bench) == {"beta.test": "enabled"}
    assert statuses(bench, "--site", "all") == {"alpha.test": "enabled", "beta.test": "enabled"}
    human = run_cli("scheduler", "status", bench=bench)
    assert human.stdout.splitlines() == [
        "beta.test: enabled",
        "(the default site only, of 2: --site all shows every site)",
    ]
    assert "alpha.test" in run_cli("--site", "all", "scheduler", "status", bench=bench).stdout


def test_pause_and_resume_write_pause_scheduler_and_keep_comments(bench: Bench) -> None:
    paused = run_cli("scheduler", "pause", bench=bench)
    assert paused.returncode == 0 and "paused" in paused.stdout
    assert read_toml(bench.common_config_path)["pause_scheduler"] is True
    assert "(unchanged)" in run_cli("scheduler", "pause", bench=bench).stdout
    assert run_cli("scheduler", "resume", bench=bench).returncode == 0
    text = bench.common_config_path.read_text()
    assert "pause_scheduler = false" in text and text.startswith("# bench-wide settings")


def test_maintenance_mode_is_written_per_site_and_doctor_says_so(bench: Bench) -> None:
    result = ok_json(run_cli("--site", "all", "set-maintenance-mode", "on", "--json", bench=bench))
    assert result["sites"] == [
        {"site": "alpha.test", "maintenance_mode": True, "changed": True},
        {"site": "beta.test", "maintenance_mode": True, "changed": True},
    ]
    assert bench.site_config_path("alpha.test").read_text().startswith("# alpha: a comment the user wrote")
    doctor = json.loads(run_cli("--site", "alpha.test", "doctor", "--json", bench=bench).stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "scheduler-enabled:alpha.test")
    assert not check["ok"] and "maintenance" in check["detail"]
    assert run_cli("--site", "alpha.test", "set-maintenance-mode", "off", bench=bench).returncode == 0
    assert read_toml(bench.site_config_path("alpha.test"))["maintenance_mode"] is False
    assert run_cli("--site", "alpha.test", "set-maintenance-mode", "maybe", bench=bench).returncode == 2


def test_doctor_reports_a_paused_bench_as_a_warning_naming_the_way_out(bench: Bench) -> None:
    """A pause is deliberate: doctor says so (a warning with the way out) and does not fail on it."""
    run_cli("scheduler", "pause", bench=bench)
    doctor = json.loads(run_cli("--site", "alpha.test", "doctor", "--json", bench=bench).stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "scheduler-enabled:alpha.test")
    assert check["ok"] and check["level"] == "warning" and "paused" in check["detail"]
    assert check["hint"] == "bench-jobs scheduler resume"
    assert not [c["name"] for c in doctor["checks"] if not c["ok"] and c["name"].startswith("scheduler-enabled")]


def test_use_writes_currentsite_and_later_commands_default_to_it(bench: Bench) -> None:
    result = run_cli("use", "beta.test", bench=bench)
    assert result.returncode == 0, result.stderr
    assert (bench.sites_dir / "currentsite.txt").read_text() == "beta.test\n"
    shown = ok_json(run_cli("show-config", "--json", bench=bench))
    assert [view["site"] for view in shown["sites"]] == ["beta.test"]
    clean_error(run_cli("use", "nope.test", bench=bench), 2, "Unknown site 'nope.test'", "alpha.test")
    clean_error(run_cli("use", "all", bench=bench), 2, "Invalid site name 'all'")
    assert (bench.sites_dir / "currentsite.txt").read_text() == "beta.test\n"


def test_set_config_types_the_value_keeps_comments_and_checks_it(bench: Bench) -> None:
    result = run_cli("set-config", "--global", "scheduler_tick_interval", "30", bench=bench)
    assert result.returncode == 0, result.stderr
    assert read_toml(bench.common_config_path)["scheduler_tick_interval"] == 30
    assert bench.common_config_path.read_text().startswith("# bench-wide settings")
    assert run_cli("--site", "alpha.test", "set-config", "timezone", "Asia/Kolkata", bench=bench).returncode == 0
    assert read_toml(bench.site_config_path("alpha.test"))["timezone"] == "Asia/Kolkata"
    assert run_cli("--site", "alpha.test", "set-config", "tags", '["a", "b"]', bench=bench).returncode == 0
    assert read_toml(bench.site_config_path("alpha.test"))["tags"] == ["a", "b"]
    before = bench.common_config_path.read_text()
    clean_error(run_cli("set-config", "-g", "scheduler_tick_interval", "7", bench=bench), 2, "divide 60")
    clean_error(
        run_cli("--site", "alpha.test", "set-config", "bench_id", "x", bench=bench), 2, "bench-wide", "--global"
    )
    clean_error(
        run_cli("--site", "alpha.test", "set-config", "schedular_enabled", "true", bench=bench),
        2,
        "did you mean 'scheduler_enabled'?",
    )
    maintenance = run_cli("--site", "alpha.test", "set-config", "maintenance_mode", "yes", bench=bench)
    clean_error(maintenance, 2, "true or false")
    assert bench.common_config_path.read_text() == before


def test_set_config_of_a_password_never_prints_it_and_makes_the_file_private(bench: Bench) -> None:
    url = "redis://:s3cret-pw@127.0.0.1:6399/0"
    os.chmod(bench.common_config_path, 0o644)
    result = run_cli("set-config", "--global", "redis_queue", url, bench=bench)
    assert result.returncode == 0, result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr and "***" in result.stdout
    assert read_toml(bench.common_config_path)["redis_queue"] == url
    assert stat.S_IMODE(bench.common_config_path.stat().st_mode) == 0o600


def test_show_config_lists_values_with_sources_and_redacts_secrets(bench: Bench) -> None:
    write(
        bench.site_config_path("alpha.test"),
        'timezone = "UTC"\nscheduler_enabled = true\ndb_password = "hunter2"\n',
    )
    env = cli_env(bench, BENCH_JOBS_REDIS_QUEUE="redis://user:pa55word@127.0.0.1:6399/0")
    result = run_cli("--site", "alpha.test", "show-config", "--json", env=env)
    (view,) = ok_json(result)["sites"]
    rows = {row["key"]: row for row in view["config"]}
    assert (rows["timezone"]["value"], rows["timezone"]["source"]) == ("UTC", "site")
    assert rows["bench_id"]["value"] == "testbench" and rows["bench_id"]["source"] == "common"
    assert rows["job_result_ttl"]["source"] == "default"
    assert rows["redis_queue"] == {
        "key": "redis_queue",
        "value": "redis://user:***@127.0.0.1:6399/0",
        "source": "$BENCH_JOBS_REDIS_QUEUE",
    }
    assert rows["db_password"]["value"] == "***"
    human = run_cli("--site", "alpha.test", "show-config", env=env)
    assert human.returncode == 0 and "hunter2" not in human.stdout and "pa55word" not in human.stdout
    assert "db_password" in human.stdout and "(site)" in human.stdout


def test_ready_for_migration_exits_0_when_idle_and_1_naming_pending_jobs(bench: Bench) -> None:
    ready = run_cli("--site", "alpha.test", "ready-for-migration", bench=bench)
    assert ready.returncode == 0 and "ready for migration" in ready.stdout
    use_bench(bench)
    job_id = bench_jobs.enqueue("sample_app.tasks.echo", record_id="m1", site="alpha.test")
    assert job_id is not None
    busy = run_cli("--site", "alpha.test", "ready-for-migration", bench=bench)
    assert busy.returncode == 1 and "NOT ready" in busy.stdout and "sample_app.tasks.echo" in busy.stdout
    assert run_cli("--site", "beta.test", "ready-for-migration", bench=bench).returncode == 0
    document = json.loads(run_cli("--site", "all", "ready-for-migration", "--json", bench=bench).stdout)
    assert document["ready"] is False
    assert [(s["site"], s["ready"], s["pending"]) for s in document["sites"]] == [
        ("alpha.test", False, 1),
        ("beta.test", True, 0),
    ]
    assert document["sites"][0]["jobs"][0]["status"] == "queued"


def test_ready_for_migration_with_redis_down_exits_3(bench: Bench) -> None:
    env = cli_env(bench, BENCH_JOBS_REDIS_QUEUE="redis://127.0.0.1:1")
    clean_error(run_cli("--site", "alpha.test", "ready-for-migration", env=env), 3, "does not answer")


def test_version_prints_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"bench-jobs {__version__}"


@pytest.mark.parametrize("command", [["doctor"], ["show-config"], ["scheduler", "status"]])
def test_site_and_bench_are_accepted_after_the_command(bench: Bench, command: list[str]) -> None:
    result = run_cli(*command, "--site", "alpha.test", "--bench", str(bench.root), "--json", env=cli_env())
    assert result.returncode in (0, 1), result.stderr
    assert "alpha.test" in result.stdout and "beta.test" not in result.stdout


def test_a_site_after_the_command_overrides_the_global_one(bench: Bench) -> None:
    result = ok_json(run_cli("--site", "beta.test", "show-config", "--site", "alpha.test", "--json", bench=bench))
    assert [view["site"] for view in result["sites"]] == ["alpha.test"]
    clean_error(run_cli("show-config", "--site", "", bench=bench), 2, "--site is empty")


def test_completion_script_and_completions_name_the_commands() -> None:
    script = run_cli("--show-completion", "bash", env=cli_env())
    assert script.returncode == 0 and "_BENCH_JOBS_COMPLETE" in script.stdout
    env = cli_env(_BENCH_JOBS_COMPLETE="complete_bash", COMP_WORDS="bench-jobs sched", COMP_CWORD="1")
    completed = subprocess.run(["bench-jobs"], capture_output=True, text=True, env=env, timeout=30)
    assert {"schedule", "scheduler"} <= set(completed.stdout.split()), completed.stdout + completed.stderr


def test_misspelt_keys_warn_one_stderr_line_each_and_doctor_warns(bench: Bench) -> None:
    common = bench.common_config_path
    common.write_text(common.read_text().replace("[workers.short]", "scheduler_tick_intervall = 30\n\n[workers.short]"))
    site = bench.site_config_path("alpha.test")
    site.write_text(site.read_text() + "schedular_enabled = false\n")
    result = run_cli("--site", "alpha.test", "scheduler", "status", bench=bench)
    assert result.returncode == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert any("'scheduler_tick_intervall'" in line and "'scheduler_tick_interval'?" in line for line in lines)
    assert any("'schedular_enabled'" in line and "did you mean 'scheduler_enabled'?" in line for line in lines)
    doctor = run_cli("--site", "alpha.test", "doctor", "--json", bench=bench)
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "config-keys")
    assert check["level"] == "warning" and check["ok"] and "did you mean 'scheduler_enabled'?" in check["detail"]


def test_set_config_merges_a_table_and_takes_a_negative_number_after_a_double_dash(bench: Bench) -> None:
    result = run_cli("set-config", "--global", "workers", "{long = {timeout = 900}}", bench=bench)
    assert result.returncode == 0, result.stderr
    workers = read_toml(bench.common_config_path)["workers"]
    assert workers == {"short": {"timeout": 30}, "default": {"timeout": 60}, "long": {"timeout": 900}}
    assert run_cli("set-config", "-g", "job_result_ttl", "--", "-1", bench=bench).returncode == 0
    assert read_toml(bench.common_config_path)["job_result_ttl"] == -1


def test_shell_completion_offers_site_names_and_events_or_scheduled_methods(bench: Bench) -> None:
    import typer

    from bench_jobs.cli.completion import complete_event, complete_site
    from bench_jobs.cli.main import app

    command = typer.main.get_command(app)
    root = typer.Context(command, info_name="bench-jobs")
    root.params = {"bench": str(bench.root), "site": None}
    sub = typer.Context(command, parent=root, info_name="trigger-scheduler-event")
    sub.params = {"command_bench": None}
    assert complete_site(root, "") == ["all", "alpha.test", "beta.test"]
    assert complete_site(sub, "b") == ["beta.test"]
    assert complete_event(sub, "da") == ["daily", "daily_long", "daily_maintenance"]
    assert "sample_app.tasks.every_tick" in complete_event(sub, "sample_app.")
    assert all(m.startswith("sample_app.tasks.") for m in complete_event(sub, "sample_app.tasks."))
    root.params = {"bench": str(bench.root / "nowhere")}
    assert complete_site(root, "") == [] and complete_event(root, "x.") == []


def test_completion_is_wired_to_the_site_option_and_the_event_argument(bench: Bench) -> None:
    env = {"_BENCH_JOBS_COMPLETE": "complete_bash", "COMP_CWORD": "4"}
    words = f"bench-jobs --bench {bench.root} --site alp"
    site = run_cli(bench=bench, env=cli_env(bench, COMP_WORDS=words, **env))
    assert site.stdout.split() == ["alpha.test"], site.stdout + site.stderr
    words = f"bench-jobs --bench {bench.root} trigger-scheduler-event hour"
    event = run_cli(bench=bench, env=cli_env(bench, COMP_WORDS=words, **env))
    assert event.stdout.split() == ["hourly", "hourly_long", "hourly_maintenance"], event.stdout + event.stderr
