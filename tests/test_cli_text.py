"""Job data is text, never markup or terminal control (issue 16, item 7): names and errors holding rich
markup, hyperlinks, escape sequences or newlines print as themselves; a payload of the wrong shape is
listed and refused with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from rq.serializers import JSONSerializer
from support import cli_env, run_cli

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import JOB_FUNCTION, new_job_id
from bench_jobs.core.text import one_line, printable

QUEUE = "testbench:default"
NASTY = "[/x] [link=https://evil.example]click[/link] \x1b[31mred\x1b]8;;https://evil.example\x07"
FORGED_LINE = "12:00:00 default: job done (fake)"


@pytest.fixture
def alpha(bench: Bench) -> Iterator[Bench]:
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        yield bench


def test_printable_escapes_control_characters() -> None:
    assert printable("a\x1b[2Jb\u202ec") == "a\\x1b[2Jb\\u202ec"
    assert printable("a\nb\tc", keep="\n") == "a\nb\\tc"
    assert one_line("x\ny", 3) == "x\\…"


def test_show_pending_jobs_prints_markup_and_escapes_as_text(alpha: Bench) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", job_name=NASTY, record_id="r")
    bench_jobs.enqueue("sample_app.tasks.echo", job_name=f"x\n{FORGED_LINE}", record_id="r")
    result = run_cli("--site", "alpha.test", "show-pending-jobs", env=cli_env(alpha, COLUMNS="400"))
    assert result.returncode == 0, result.stderr
    assert "[/x] [link=https://evil.example]click[/link]" in result.stdout
    assert "\x1b" not in result.stdout and "\\x1b[31mred" in result.stdout
    assert not any(line.lstrip().startswith(FORGED_LINE) for line in result.stdout.splitlines())
    assert f"x\\n{FORGED_LINE}" in result.stdout


def test_an_emoji_code_in_a_job_name_prints_as_written(alpha: Bench) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", job_name="deploy :fire: now", record_id="r")
    result = run_cli("--site", "alpha.test", "show-pending-jobs", env=cli_env(alpha, COLUMNS="400"))
    assert result.returncode == 0, result.stderr
    assert "deploy :fire: now" in result.stdout and "\N{FIRE}" not in result.stdout, result.stdout


@pytest.mark.slow
def test_show_failed_jobs_prints_an_error_holding_markup(alpha: Bench) -> None:
    bench_jobs.enqueue("sample_app.tasks.fail", message=NASTY)
    assert run_cli("worker", "--burst", bench=alpha).returncode == 0
    result = run_cli("--site", "alpha.test", "show-failed-jobs", env=cli_env(alpha, COLUMNS="400"))
    assert result.returncode == 0, result.stderr
    assert "[/x] [link=https://evil.example]click[/link]" in result.stdout and "\x1b" not in result.stdout


@pytest.mark.slow
def test_a_payload_whose_method_is_a_list_is_listed_and_refused(alpha: Bench, redis_client: redis.Redis) -> None:
    job_id = new_job_id("testbench", "alpha.test")
    data = JSONSerializer.dumps((JOB_FUNCTION, None, [], {"site": "alpha.test", "method": ["os", "system"]}))
    now = "2026-01-01T00:00:00.000000Z"
    redis_client.hset(
        f"rq:job:{job_id}",
        mapping={"data": data, "origin": QUEUE, "status": "queued", "created_at": now, "enqueued_at": now},
    )
    redis_client.rpush(f"rq:queue:{QUEUE}", job_id)
    redis_client.sadd("rq:queues", f"rq:queue:{QUEUE}")
    pending = run_cli("--site", "alpha.test", "show-pending-jobs", bench=alpha)
    assert pending.returncode == 0, pending.stderr
    assert run_cli("worker", "--burst", bench=alpha).returncode == 0
    for args in ((), ("--job-id", job_id), ("--json",)):
        shown = run_cli("--site", "alpha.test", "show-failed-jobs", *args, bench=alpha)
        assert shown.returncode == 0, shown.stderr
    errors = {job["id"]: job["error"] for job in json.loads(shown.stdout)["jobs"]}
    assert "payload's 'method' is a list" in (errors.get(job_id) or ""), errors


@pytest.mark.slow
def test_a_newline_in_a_job_name_cannot_forge_a_worker_log_line(alpha: Bench) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", job_name=f"x\n{FORGED_LINE}", record_id="r")
    result = run_cli("worker", "--burst", bench=alpha)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "(fake)" in output, "the worker does not log the job name: this test proves nothing"
    assert not any(line.startswith(FORGED_LINE) for line in output.splitlines()), output
