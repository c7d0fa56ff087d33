"""Secrets and dangerous defaults: no password is ever printed, whatever characters it holds; `init` writes a
valid bench or nothing; an empty site selection never means the default site; refused credentials are said
to be refused (exit 3), on a real redis-server that requires a password."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from support import RedisServer, cli_env, make_bench, point_at_redis, run_cli, start_redis

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, redact_url, url_has_password
from bench_jobs.core.context import use_bench
from bench_jobs.core.urls import scheme_and_host

# Pieces of a password with every character that urllib would split a URL at; none may ever be printed.
PIECES = ("Zq7", "Xk4", "Wp2", "Rt9")
PASSWORD = "Zq7?Xk4#Wp2/Rt9"
UNENCODED_URL = f"redis://:{PASSWORD}@127.0.0.1:1/0"


def assert_no_secret(result: subprocess.CompletedProcess[str], *pieces: str) -> None:
    shown = result.stdout + result.stderr
    for piece in pieces or PIECES:
        assert piece not in shown, shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (UNENCODED_URL, "redis://:***@127.0.0.1:1/0"),
        ("redis://:p@ss:Zq7@host:6379", "redis://:***@host:6379"),
        ("redis://Zq7@host", "redis://***@host"),  # a user-info without ':' may be a password written wrongly
        ("redis://u/Zq7:x@host", "redis://***@host"),
        ("redis://host/0?password=Zq7&Xk4=1&db=2", "redis://host/0?password=***&***&db=2"),
        ("redis://host/0?PassWord=Zq7#Xk4", "redis://host/0?PassWord=***"),
        ("rediss://host/0?ssl_password=Zq7", "rediss://host/0?ssl_password=***"),
        (":Zq7@localhost:6379", "<redacted URL>"),
    ],
)
def test_passwords_with_unencoded_characters_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert url_has_password(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (UNENCODED_URL, "redis://127.0.0.1"),
        ("rediss://u:Zq7@[::1]:x/0", "rediss://[::1]"),
        ("Zq7:Xk4", "<redacted URL>"),
        ("unix://:Zq7@/run/redis.sock", "<redacted URL>"),
    ],
)
def test_an_unparseable_url_shows_only_scheme_and_host(url: str, shown: str) -> None:
    assert scheme_and_host(url) == shown


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        (UNENCODED_URL, "percent-encoded"),
        ("redis://:Zq7[Xk4@127.0.0.1:1/0", "percent-encoded"),
        ("redis://127.0.0.1:Zq7Xk4Wp2Rt9/0", "port is not a number"),
        ("http://:Zq7Xk4Wp2Rt9@127.0.0.1:1/0", "not a Redis URL"),
    ],
)
def test_a_url_redis_cannot_read_is_a_config_error_that_never_shows_the_password(
    bench: Bench, url: str, needle: str
) -> None:
    point_at_redis(bench, url)
    for argv in (["show-queue"], ["doctor", "--json"], ["--verbose", "--site", "alpha.test", "show-pending-jobs"]):
        result = run_cli(*argv, bench=bench)
        assert result.returncode == 2, result.stderr
        assert needle in result.stderr
        assert_no_secret(result, "Zq7", "Xk4", "Wp2", "Rt9")


def test_a_bad_url_in_the_environment_is_redacted_too(bench: Bench) -> None:
    result = run_cli("show-queue", env=cli_env(bench, BENCH_JOBS_REDIS_QUEUE=UNENCODED_URL))
    assert result.returncode == 2, result.stderr
    assert "$BENCH_JOBS_REDIS_QUEUE" in result.stderr
    assert_no_secret(result)


def test_init_escapes_quotes_and_backslashes_in_the_password(tmp_path: Path) -> None:
    url = 'redis://:pa"ss\\wd@127.0.0.1:1/0'
    result = run_cli("init", str(tmp_path / "b"), "--redis-url", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    bench = Bench((tmp_path / "b").resolve())
    assert load_bench_settings(bench, env={}).redis_url == url
    assert bench.common_config_path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "argv",
    [
        ["--redis-url", UNENCODED_URL],
        ["--redis-url", "redis://:Zq7[Xk4@127.0.0.1:1/0"],
        ["--timezone", "Mars/Olympus"],
        ["--site-name", "../x"],
    ],
)
def test_a_failed_init_writes_nothing(tmp_path: Path, argv: list[str]) -> None:
    result = run_cli("init", str(tmp_path / "b"), *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "b").exists()
    assert_no_secret(result)


def test_init_that_fails_while_writing_removes_what_it_wrote(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "Procfile").mkdir(parents=True)  # the last file init writes cannot be written
    (root / "notes.txt").write_text("mine\n")
    result = run_cli("init", str(root), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["Procfile", "notes.txt"]
    assert (root / "notes.txt").read_text() == "mine\n"


def _queued(redis_client: redis.Redis) -> int:
    return int(redis_client.llen("rq:queue:testbench:default"))


@pytest.mark.parametrize("argv", [["--site", ""], ["--site", "  "]])
def test_an_empty_site_option_is_a_usage_error_not_the_default_site(
    bench: Bench, redis_client: redis.Redis, argv: list[str]
) -> None:
    (bench.sites_dir / "currentsite.txt").write_text("alpha.test\n")
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="keep", site="alpha.test")
    result = run_cli(*argv, "purge-jobs", "--yes", bench=bench)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: --site is empty")
    assert "Traceback" not in result.stderr
    assert _queued(redis_client) == 1


def test_an_empty_site_variable_is_a_usage_error_not_the_default_site(bench: Bench, redis_client: redis.Redis) -> None:
    (bench.sites_dir / "currentsite.txt").write_text("alpha.test\n")
    use_bench(bench)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="keep", site="alpha.test")
    for argv in (["purge-jobs", "--yes"], ["doctor"]):
        result = run_cli(*argv, env=cli_env(bench, BENCH_JOBS_SITE=""))
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("Error: $BENCH_JOBS_SITE is empty")
        assert "unset BENCH_JOBS_SITE" in result.stderr
    assert _queued(redis_client) == 1


# Auth: a redis-server of this module's own that requires a password.

SERVER_PASSWORD = "Zq7?Xk4#Wp2/Rt9@Mn3"


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("locked-redis"), password=SERVER_PASSWORD)
    yield server
    server.stop()


def _url(server: RedisServer, password: str | None) -> str:
    user_info = f":{quote(password, safe='')}@" if password is not None else ""
    return f"unix://{user_info}{server.socket}"


@pytest.fixture
def locked_bench(tmp_path: Path, locked_redis: RedisServer) -> Bench:
    return make_bench(tmp_path / "bench", _url(locked_redis, SERVER_PASSWORD))


def test_the_right_password_percent_encoded_works(locked_bench: Bench) -> None:
    result = run_cli("show-queue", "--json", bench=locked_bench)
    assert result.returncode == 0, result.stderr


WRONG_PASSWORD = "Wr0ng?Pw#Qx/Yz"
WRONG_PIECES = ("Wr0ng", "Pw", "Qx", "Yz")


@pytest.mark.parametrize("password", [WRONG_PASSWORD, None])
@pytest.mark.parametrize(
    "argv",
    [["doctor"], ["doctor", "--json"], ["show-queue"], ["--verbose", "show-queue"], ["worker", "--burst"]],
)
def test_refused_credentials_say_authentication_failed(
    locked_bench: Bench, locked_redis: RedisServer, password: str | None, argv: list[str]
) -> None:
    point_at_redis(locked_bench, _url(locked_redis, password))
    result = run_cli(*argv, bench=locked_bench)
    assert result.returncode == 3, result.stderr
    assert "authentication failed" in result.stderr
    assert "does not answer" not in result.stderr
    assert "Hint: Check the password" in result.stderr
    assert "redis_queue in sites/common_site_config.toml" in result.stderr
    assert_no_secret(result, *WRONG_PIECES, *PIECES)


def test_refused_credentials_from_the_environment_name_the_variable(
    locked_bench: Bench, locked_redis: RedisServer
) -> None:
    env = cli_env(locked_bench, BENCH_JOBS_REDIS_QUEUE=_url(locked_redis, WRONG_PASSWORD))
    result = run_cli("show-queue", env=env)
    assert result.returncode == 3, result.stderr
    assert "authentication failed" in result.stderr
    assert "$BENCH_JOBS_REDIS_QUEUE" in result.stderr
    assert_no_secret(result, *WRONG_PIECES)


def test_the_scheduler_exits_3_when_redis_refuses_its_credentials_from_the_start(
    locked_bench: Bench, locked_redis: RedisServer
) -> None:
    point_at_redis(locked_bench, _url(locked_redis, WRONG_PASSWORD))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench_jobs", "schedule"],
        env=cli_env(locked_bench),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 3, stderr
    assert "authentication failed" in stderr
    for piece in WRONG_PIECES:
        assert piece not in stdout + stderr


def test_an_auth_failure_after_the_ping_is_still_an_auth_failure(
    locked_bench: Bench, locked_redis: RedisServer
) -> None:
    """The password changes after the client was let in: the next connection meets WRONGPASS/NOAUTH."""
    from bench_jobs.core.connection import auth_failure, connect_checked, is_auth_failure

    settings = load_bench_settings(locked_bench)
    conn = connect_checked(settings)
    admin = locked_redis.client()
    try:
        admin.config_set("requirepass", "rotated")
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(redis.RedisError) as caught:
            conn.llen("x")
        assert is_auth_failure(caught.value)
        failure = auth_failure(caught.value)
        assert failure.exit_code == 3
        assert "authentication failed" in failure.message
        assert "rotated" not in failure.message + (failure.hint or "")
    finally:
        admin.config_set("requirepass", SERVER_PASSWORD)
        admin.close()


def test_an_auth_failure_anywhere_in_a_command_is_reported_as_one(
    locked_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's last resort, for a Redis call outside connect_checked: a real WRONGPASS, exit 3."""
    from bench_jobs.cli.main import app, main

    def probe() -> None:
        redis.Redis(unix_socket_path=str(locked_redis.socket), password=WRONG_PASSWORD).llen("x")

    app.command("probe-redis")(probe)
    try:
        code = main(["probe-redis"])
    finally:
        app.registered_commands.pop()
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.startswith("Error: Redis refused the credentials: authentication failed")
    assert "Hint: Check the password" in err
    for piece in WRONG_PIECES:
        assert piece not in err
