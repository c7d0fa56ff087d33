"""Loading config: defaults < common < site < env, typed and validated (DESIGN 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import (
    DEFAULT_REDIS_URL,
    load_bench_settings,
    load_site_settings,
    redact_url,
)
from bench_jobs.errors import EXIT_USAGE, ConfigError


def minimal_bench(root: Path, common: str = "", site: str = "") -> Bench:
    write(root / "sites" / "common_site_config.toml", common)
    write(root / "sites" / "one" / "site_config.toml", site)
    return Bench(root)


def test_defaults_apply_when_files_are_empty(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "My Bench!")
    settings = load_site_settings(bench, "one", env={"TZ": "Asia/Kolkata"})
    assert settings.bench.redis_url == DEFAULT_REDIS_URL
    assert settings.bench.bench_id == "my-bench"
    assert settings.apps == ()
    assert settings.timezone == "Asia/Kolkata"
    assert settings.scheduler_enabled is False
    assert settings.maintenance_mode is False
    assert settings.bench.tick_interval_s == 60
    assert settings.bench.scheduler_interval_s == 240
    assert {q: s.timeout_s for q, s in settings.bench.queues.items()} == {"short": 300, "default": 300, "long": 1500}
    assert settings.bench.result_ttl_s == 600
    assert settings.bench.failure_ttl_s == 7 * 24 * 3600


def test_site_overrides_common_and_env_overrides_redis(tmp_path: Path) -> None:
    bench = minimal_bench(
        tmp_path / "b",
        common='redis_queue = "redis://h:1"\napps = ["a"]\ntimezone = "UTC"\nmaintenance_mode = true\ncustom = 1\n'
        "[workers.long]\ntimeout = 99\n[workers.reports]\nbackground_workers = 3\n",
        site='apps = ["b", "c"]\ntimezone = "Europe/Berlin"\nscheduler_enabled = true\nmaintenance_mode = false\n',
    )
    settings = load_site_settings(bench, "one", env={"BENCH_JOBS_REDIS_QUEUE": "redis://env:2"})
    assert settings.apps == ("b", "c")
    assert settings.timezone == "Europe/Berlin"
    assert settings.scheduler_enabled is True
    assert settings.maintenance_mode is False
    assert settings.values["custom"] == 1
    assert settings.bench.redis_url == "redis://env:2"
    assert settings.bench.queues["long"].timeout_s == 99
    assert settings.bench.queues["reports"].timeout_s == 300
    assert settings.bench.queues["reports"].background_workers == 3
    assert load_bench_settings(bench, env={}).redis_url == "redis://h:1"


def test_scheduler_interval_is_read_from_common(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "b", common="scheduler_interval = 300\n")
    assert load_bench_settings(bench, env={}).scheduler_interval_s == 300


def test_scheduler_enabled_in_common_does_not_enable_sites(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "b", common="scheduler_enabled = true\n")
    assert load_site_settings(bench, "one", env={}).scheduler_enabled is False


@pytest.mark.parametrize(
    ("common", "site", "needle"),
    [
        ('redis_queue = "http://x"', "", "redis_queue"),
        ("scheduler_tick_interval = 7", "", "divide 60"),
        ("scheduler_tick_interval = 90", "", "multiple of 60"),
        ("[workers.long]\ntimeout = -5", "", "workers.long.timeout"),
        ("[workers.long]\nthreads = 2", "", "timeout, background_workers"),
        ("job_result_ttl = 'soon'", "", "job_result_ttl"),
        ("", 'timezone = "Mars/Olympus"', "IANA"),
        ("", "scheduler_enabled = 'yes'", "true or false"),
        ("", "apps = 'my_app'", "list of importable package names"),
        ("", 'redis_queue = "redis://x:1"', "bench-wide"),
        ('bench_id = "Has Spaces"', "", "bench_id"),
        ('redis_queue = "redis://127.0.0.1:notaport"', "", "port is not a number"),
        ('retry_intervals = "soon"', "", "non-empty list of seconds"),
        ("retry_intervals = [-5]", "", "non-empty list of seconds"),
        ("retry_intervals = []", "", "non-empty list of seconds"),
        ("", "retry_intervals = [1]", "bench-wide"),
        ("scheduler_interval = 7", "", "a divisor of 60"),
        ("scheduler_interval = 0", "", "60 or more"),
        ("scheduler_interval = '4m'", "", "*/N minutes"),
        ("", "scheduler_interval = 300", "bench-wide"),
    ],
)
def test_invalid_values_name_the_file_key_and_allowed_values(
    tmp_path: Path, common: str, site: str, needle: str
) -> None:
    bench = minimal_bench(tmp_path / "b", common=common + "\n", site=site + "\n")
    with pytest.raises(ConfigError) as caught:
        load_site_settings(bench, "one", env={})
    error = caught.value
    assert error.exit_code == EXIT_USAGE
    text = f"{error.message} {error.hint}"
    assert needle in text
    assert "site_config.toml" in error.message


def test_malformed_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "b", site='timezone = "UTC"\nscheduler_enabled = = true\n')
    with pytest.raises(ConfigError) as caught:
        load_site_settings(bench, "one", env={})
    assert str(bench.site_config_path("one")) in caught.value.message
    assert "line 2" in caught.value.message


def test_unterminated_file_still_names_a_line(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "b", site="a = 1\nb = [\n")
    with pytest.raises(ConfigError, match="line 3"):
        load_site_settings(bench, "one", env={})


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    bench = minimal_bench(tmp_path / "b", site="scheduler_enabled = false\n")
    assert load_site_settings(bench, "one", env={}).scheduler_enabled is False
    write(bench.site_config_path("one"), "scheduler_enabled = true   # now on\n")
    assert load_site_settings(bench, "one", env={}).scheduler_enabled is True


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host/2", "redis://user:***@host/2"),
        ("redis://host:6379", "redis://host:6379"),
        ("rediss://u:s3cret@[::1]:6380/1", "rediss://u:***@[::1]:6380/1"),
        ("redis://host/0?password=s3cret&ssl=true", "redis://host/0?password=***&ssl=true"),
        ("unix:///run/redis.sock?db=2&password=s3cret", "unix:///run/redis.sock?db=2&password=***"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_misspelt_keys_are_warned_once_each_with_a_suggestion(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bench = minimal_bench(
        tmp_path / "b",
        common="scheduler_tick_intervall = 30\nmy_custom_key = 1\n",
        site="schedular_enabled = true\n",
    )
    with caplog.at_level("WARNING", logger="bench_jobs.config"):
        settings = load_site_settings(bench, "one")
        write(bench.site_config_path("one"), "schedular_enabled = true\n# changed\n")
        load_site_settings(bench, "one")
    assert settings.scheduler_enabled is False and settings.bench.tick_interval_s == 60
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert any("'schedular_enabled'" in m and "did you mean 'scheduler_enabled'?" in m for m in messages)
    assert any("'scheduler_tick_intervall'" in m and "did you mean 'scheduler_tick_interval'?" in m for m in messages)
    assert not any("my_custom_key" in m for m in messages)


def test_pause_scheduler_is_a_bench_wide_boolean(tmp_path: Path) -> None:
    assert load_bench_settings(minimal_bench(tmp_path / "a", common="pause_scheduler = true\n")).scheduler_paused
    with pytest.raises(ConfigError, match="pause_scheduler"):
        load_bench_settings(minimal_bench(tmp_path / "b", common='pause_scheduler = "yes"\n'))
    with pytest.raises(ConfigError, match="bench-wide"):
        load_site_settings(minimal_bench(tmp_path / "c", site="pause_scheduler = true\n"), "one")


def test_work_horse_keys_are_bench_wide_with_defaults(tmp_path: Path) -> None:
    defaults = load_bench_settings(minimal_bench(tmp_path / "a"))
    assert (defaults.max_jobs_per_horse, defaults.max_horse_memory_mb, defaults.fork_per_job) == (1000, 512, False)
    common = "max_jobs_per_horse = 50\nmax_horse_memory_mb = 256\nfork_per_job = true\n"
    settings = load_bench_settings(minimal_bench(tmp_path / "b", common=common))
    assert (settings.max_jobs_per_horse, settings.max_horse_memory_mb, settings.fork_per_job) == (50, 256, True)
    for bad in ("max_jobs_per_horse = 0", "max_horse_memory_mb = 1.5", 'fork_per_job = "yes"'):
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_bench_settings(minimal_bench(tmp_path / bad.split()[0], common=bad + "\n"))
    with pytest.raises(ConfigError, match="bench-wide"):
        load_site_settings(minimal_bench(tmp_path / "c", site="max_jobs_per_horse = 5\n"), "one")
