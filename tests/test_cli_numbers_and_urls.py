"""Smaller CLI edges of issue 16, item 9: JSON never carries NaN or Infinity (arguments are refused with exit
2, results with exit 1, enqueue at once), and a Redis URL option redis-py cannot read is a usage error."""

from __future__ import annotations

import pytest
from support import cli_env, run_cli

import bench_jobs
from bench_jobs.cli import state
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.errors import BenchJobsError, JobError


@pytest.mark.parametrize("kwargs", ["{'record_id': 1e999}", '{"record_id": NaN}', '{"record_id": -Infinity}'])
def test_execute_refuses_non_finite_numbers_with_exit_2(bench: Bench, kwargs: str) -> None:
    result = run_cli("--site", "alpha.test", "execute", "sample_app.tasks.echo", "--kwargs", kwargs, bench=bench)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "NaN, Infinity" in result.stderr and "Infinity" not in result.stdout


def test_json_output_never_writes_nan(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BenchJobsError, match="NaN or Infinity"):
        state.print_json({"lag": float("nan")})
    assert capsys.readouterr().out == ""


def test_enqueue_refuses_nan_arguments_at_once(bench: Bench) -> None:
    use_bench(bench)
    with pytest.raises(JobError, match=r"'ratio'.*NaN or Infinity"):
        bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id="r", ratio=float("inf"))


def test_a_redis_url_option_redis_cannot_read_is_a_usage_error(bench: Bench) -> None:
    url = "redis://:s3cret@127.0.0.1:6379/0?socket_timeout=abc"
    result = run_cli("show-queue", env=cli_env(bench, BENCH_JOBS_REDIS_QUEUE=url))
    assert result.returncode == 2, result.stderr
    assert "'socket_timeout' is not a valid float" in result.stderr and "s3cret" not in result.stderr
