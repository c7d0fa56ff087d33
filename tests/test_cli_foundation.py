"""The CLI frame, enable/disable-scheduler, execute, init and new-site, through the real entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import cli_env, point_at_redis, run_cli, write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config_writer import update_config_file

COMMANDS = ("enable-scheduler", "disable-scheduler", "execute", "init", "new-site")


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("Error: ")
    for needle in needles:
        assert needle in result.stderr


def test_help_lists_every_command_with_text() -> None:
    for argv in (["bench-jobs", "--help"], [sys.executable, "-m", "bench_jobs", "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=cli_env())
        assert result.returncode == 0
        for command in COMMANDS:
            assert command in result.stdout
        assert "Examples" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [[c] for c in COMMANDS]
    + [
        ["worker"],
        ["schedule"],
        ["start"],
        ["doctor"],
        ["trigger-scheduler-event"],
        ["show-schedule"],
        ["setup", "procfile"],
        ["setup", "supervisor"],
        ["setup", "systemd"],
        ["scheduler"],
        ["scheduler", "status"],
        ["scheduler", "pause"],
        ["scheduler", "resume"],
        ["set-maintenance-mode"],
        ["use"],
        ["set-config"],
        ["show-config"],
        ["ready-for-migration"],
        ["create-rq-users"],
    ],
)
def test_every_command_help_ends_with_an_example_on_its_own_line(argv: list[str]) -> None:
    result = run_cli(*argv, "--help")
    assert result.returncode == 0
    assert re.search(r"Examples?:\n\n +(cd mybench && )?bench-jobs ", result.stdout), result.stdout


def test_help_does_not_import_redis_rq_or_croniter() -> None:
    code = (
        "import sys; from bench_jobs.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('rq', 'redis', 'croniter', 'tomlkit') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_enable_all_then_disable_one_keeps_comments(bench: Bench) -> None:
    for site in ("alpha.test", "beta.test"):
        update_config_file(bench.site_config_path(site), {"scheduler_enabled": False})
    result = run_cli("--site", "all", "enable-scheduler", bench=bench)
    assert result.returncode == 0, result.stderr
    assert "alpha.test: scheduler enabled" in result.stdout
    assert "beta.test: scheduler enabled" in result.stdout
    alpha = bench.site_config_path("alpha.test").read_text()
    beta = bench.site_config_path("beta.test").read_text()
    assert "scheduler_enabled = true" in alpha and "# alpha: a comment the user wrote" in alpha
    assert "scheduler_enabled = true" in beta and "# beta: keep me" in beta

    result = run_cli("--site", "alpha.test", "disable-scheduler", "--json", bench=bench)
    assert json.loads(result.stdout) == {"sites": [{"site": "alpha.test", "scheduler_enabled": False, "changed": True}]}
    assert "scheduler_enabled = false" in bench.site_config_path("alpha.test").read_text()
    assert "scheduler_enabled = true" in bench.site_config_path("beta.test").read_text()


def test_enable_reports_an_unchanged_site(bench: Bench) -> None:
    result = run_cli("--site", "alpha.test", "enable-scheduler", bench=bench)
    assert "already enabled (unchanged)" in result.stdout


def test_execute_passes_python_literal_kwargs_and_prints_json(bench: Bench) -> None:
    result = run_cli(
        "--site",
        "beta.test",
        "execute",
        "sample_app.tasks.echo",
        "--kwargs",
        "{'record_id': 'TEST-001', 'n': 2}",
        bench=bench,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"record_id": "TEST-001", "site": "beta.test", "extra": {"n": 2}}
    calls = [
        json.loads(line)["event"] for line in (bench.logs_dir / "beta.test" / "calls.jsonl").read_text().splitlines()
    ]
    assert calls == ["before_job", "echo", "after_job"]


def test_execute_takes_json_args_and_sees_site_config(bench: Bench) -> None:
    result = run_cli(
        "--site", "beta.test", "execute", "sample_app.tasks.site_setting", "--args", '["timezone"]', bench=bench
    )
    assert json.loads(result.stdout) == "Europe/Berlin"


def test_execute_keeps_what_the_function_prints_off_stdout(bench: Bench) -> None:
    result = run_cli("--site", "alpha.test", "execute", "sample_app.tasks.chatty", bench=bench)
    assert json.loads(result.stdout) == [1, 2]
    assert "progress: halfway" in result.stderr


def test_execute_site_all_prints_each_sites_result(bench: Bench) -> None:
    result = run_cli("--site", "all", "execute", "bench_jobs.core.context.current_site", bench=bench)
    assert json.loads(result.stdout) == {"alpha.test": "alpha.test", "beta.test": "beta.test"}


def test_execute_of_a_raising_function_exits_1_and_runs_after_job(bench: Bench) -> None:
    result = run_cli(
        "--site", "alpha.test", "execute", "sample_app.tasks.fail", "--kwargs", '{"message": "nope"}', bench=bench
    )
    assert_clean_error(result, 1, "ValueError: nope")
    calls = [
        json.loads(line)["event"] for line in (bench.logs_dir / "alpha.test" / "calls.jsonl").read_text().splitlines()
    ]
    assert calls == ["before_job", "fail", "after_job"]
    verbose = run_cli("--verbose", "--site", "alpha.test", "execute", "sample_app.tasks.fail", bench=bench)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "raise ValueError(message)" in verbose.stderr


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--site", "alpha.test", "execute", "sample_app.tasks.nope"], "no function 'nope'"),
        (["--site", "alpha.test", "execute", "no_such_app.mod.fn"], "no module named 'no_such_app'"),
        (["--site", "gamma.test", "execute", "sample_app.tasks.echo"], "Unknown site 'gamma.test'"),
        (["--site", "../etc", "execute", "sample_app.tasks.echo"], "Invalid site name '../etc'"),
        (["--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", "{oops"], "--kwargs"),
        (["--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", "__import__('os')"], "--kwargs"),
        (["--site", "alpha.test", "execute", "sample_app.tasks.echo", "--args", "{'a': 1}"], "--args must be a list"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(bench: Bench, argv: list[str], needle: str) -> None:
    assert_clean_error(run_cli(*argv, bench=bench), 2, needle)


def test_malformed_toml_exits_2_naming_file_and_line(bench: Bench) -> None:
    path = bench.site_config_path("alpha.test")
    path.write_text(path.read_text() + "broken = = 1\n")
    result = run_cli("--site", "alpha.test", "execute", "sample_app.tasks.echo", bench=bench)
    assert_clean_error(result, 2, str(path), "line 4")


def test_a_bad_cron_in_hooks_is_a_warning_for_execute_naming_app_event_and_value(bench: Bench) -> None:
    hooks = bench.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(hooks.read_text().replace('"*/15 * * * *"', '"*/15 * * *"'))
    result = run_cli(
        "--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", "{'record_id': 'x'}", bench=bench
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["record_id"] == "x"
    warning = result.stderr.strip().splitlines()[0]
    assert warning.startswith("Warning: alpha.test: sample_app.hooks cron: */15 * * *") and "5 fields" in warning
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("hooks_text", "needle"),
    [
        ('before_job = ["sample_app.tasks.gone"]\n', "sample_app.hooks before_job: sample_app.tasks.gone"),
        ('after_job = ["no_such_pkg.x.y"]\n', "sample_app.hooks after_job: no_such_pkg.x.y"),
        ("raise RuntimeError('hooks broke')\n", "importing raised RuntimeError: hooks broke"),
    ],
)
def test_execute_refuses_a_site_whose_job_hooks_are_broken(bench: Bench, hooks_text: str, needle: str) -> None:
    hooks = bench.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(hooks.read_text() + hooks_text)
    result = run_cli("--site", "alpha.test", "execute", "sample_app.tasks.chatty", bench=bench)
    assert_clean_error(result, 2, "Refused to run 'sample_app.tasks.chatty' for site alpha.test", needle, "doctor")
    assert not (bench.logs_dir / "alpha.test" / "calls.jsonl").exists(), "nothing ran, not even before_job"


def test_execute_gives_job_hooks_the_path_kwargs_and_result(bench: Bench) -> None:
    result = run_cli(
        "--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", "{'record_id': 'E'}", bench=bench
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (bench.logs_dir / "alpha.test" / "calls.jsonl").read_text().splitlines()]
    before, _, after = lines
    assert (before["method"], before["kwargs"], before["transaction_type"]) == (
        "sample_app.tasks.echo",
        {"record_id": "E"},
        "job",
    )
    assert after["result"] == json.loads(result.stdout)


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:1/0", "redis://127.0.0.1:1/0?password=hunter2"])
def test_password_in_redis_url_is_never_printed(bench: Bench, url: str) -> None:
    point_at_redis(bench, url)
    for argv in (["show-queue"], ["--site", "alpha.test", "show-pending-jobs"], ["--verbose", "doctor"]):
        result = run_cli(*argv, bench=bench)
        assert result.returncode == 3, result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "***" in result.stderr


def test_init_with_a_password_keeps_the_config_private(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "b"), "--redis-url", "redis://:pw@127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b" / "sites" / "common_site_config.toml").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["execute"], "Missing argument"),
        (["show-queue", "--foo"], "No such option: --foo"),
        (["worker", "--num-workers", "x"], "is not a valid int"),
        (["schedule", "--json"], "--json goes with --once"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(bench: Bench, argv: list[str], needle: str) -> None:
    result = run_cli(*argv, bench=bench)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr and "unexpected" not in result.stderr


def test_init_with_a_bad_redis_url_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "b"), "--redis-url", "http://foo", cwd=tmp_path)
    assert_clean_error(result, 2, "redis://, rediss:// or unix://")
    assert not (tmp_path / "b").exists()


def test_redis_hint_names_the_environment_variable_when_it_set_the_url(bench: Bench) -> None:
    result = run_cli("show-queue", env=cli_env(bench, BENCH_JOBS_REDIS_QUEUE="redis://127.0.0.1:1"))
    assert result.returncode == 3
    assert "$BENCH_JOBS_REDIS_QUEUE" in result.stderr


def test_a_bench_wide_command_still_refuses_an_unknown_site(bench: Bench) -> None:
    assert_clean_error(run_cli("--site", "nope", "show-queue", bench=bench), 2, "Unknown site 'nope'")


def test_init_makes_a_bench_whose_demo_site_executes(tmp_path: Path) -> None:
    result = run_cli("init", str(tmp_path / "mybench"), "--timezone", "Asia/Kolkata", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli("execute", "demo_app.tasks.greet", "--kwargs", "{'name': 'Ada'}", cwd=tmp_path / "mybench")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "Hello, Ada!", "site": "site1.local"}
    assert "greeted Ada" in (tmp_path / "mybench" / "logs" / "site1.local" / "demo.log").read_text()
    again = run_cli("init", str(tmp_path / "mybench"), cwd=tmp_path)
    assert_clean_error(again, 2, "already a bench")


def test_new_site_creates_a_site_and_refuses_duplicates(bench: Bench) -> None:
    result = run_cli("new-site", "gamma.test", "--apps", "sample_app", "--timezone", "Asia/Kolkata", bench=bench)
    assert result.returncode == 0, result.stderr
    text = bench.site_config_path("gamma.test").read_text()
    assert 'timezone = "Asia/Kolkata"' in text and 'apps = ["sample_app"]' in text
    assert_clean_error(run_cli("new-site", "gamma.test", bench=bench), 2, "already exists")
    assert_clean_error(run_cli("new-site", "../x", bench=bench), 2, "Invalid site name")
    assert_clean_error(run_cli("new-site", "delta", "--timezone", "Nowhere/Land", bench=bench), 2, "time zone")


def test_outside_a_bench_the_error_says_how_to_make_one(tmp_path: Path) -> None:
    write(tmp_path / "empty" / "x.txt", "")
    result = run_cli("--site", "a", "execute", "x.y", cwd=tmp_path / "empty")
    assert_clean_error(result, 2, "No bench found", "bench-jobs init")
