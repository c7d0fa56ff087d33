"""`create-rq-users`: two benches on one Redis, each logging in as its own ACL user, run their jobs; neither
can read, delete or forge the other's keys, nor run an admin command. Bench ids `a` and `ab`: one is a
prefix of the other, so a pattern that forgot its separator would let `a` reach `ab`'s keys."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, SCHEDULER_LOCKING_KEY_TEMPLATE
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY
from support import RedisServer, cli_env, kill_tree, make_bench, run_cli, start_cli, start_redis, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings, read_toml
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys, new_job_id, rq_queue_name, worker_name
from bench_jobs.core.rq_acl import acl_rules, rq_credentials
from bench_jobs.errors import ConfigError

ADMIN_PASSWORD = "admin-secret-1"
SITE = "alpha.test"


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server whose `default` user needs a password and that saves its users to an aclfile."""
    folder = tmp_path_factory.mktemp("acl-redis")
    aclfile = folder / "users.acl"
    aclfile.write_text(f"user default on >{ADMIN_PASSWORD} ~* &* +@all\n")
    server = start_redis(folder, extra=("--aclfile", str(aclfile)), password=ADMIN_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def admin(acl_redis: RedisServer) -> Iterator[redis.Redis]:
    client = acl_redis.client()
    client.flushall()
    for user in client.acl_users():
        if user != "default":
            client.acl_deluser(user)
    yield client
    client.flushall()
    client.close()


def shared_bench(root: Path, url: str, bench_id: str) -> Bench:
    bench = make_bench(root, url)
    common = bench.common_config_path
    common.write_text(common.read_text().replace('bench_id = "testbench"', f'bench_id = "{bench_id}"'))
    return bench


def create_users(bench: Bench, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(bench, BENCH_JOBS_REDIS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    return run_cli("create-rq-users", *args, bench=bench, env=env)


def login_as(server: RedisServer, bench: Bench) -> redis.Redis:
    common = read_toml(bench.common_config_path)
    return redis.Redis(
        unix_socket_path=str(server.socket), username=common["rq_username"], password=common["rq_password"]
    )


@pytest.fixture
def two_benches(tmp_path: Path, acl_redis: RedisServer, admin: redis.Redis) -> tuple[Bench, Bench]:
    # The URL holds no password: the admin's comes from $BENCH_JOBS_REDIS_ADMIN_PASSWORD, as it should.
    return shared_bench(tmp_path / "a", acl_redis.url, "a"), shared_bench(tmp_path / "ab", acl_redis.url, "ab")


@pytest.fixture
def bench_workers() -> Iterator[Callable[[Bench], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(bench: Bench) -> subprocess.Popen[str]:
        started.append(start_cli(bench, "worker", "--queue", "default"))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            kill_tree(process)


def refused(call: Callable[[], Any]) -> bool:
    try:
        call()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def test_each_bench_runs_its_jobs_as_its_own_user_and_cannot_touch_the_others(
    two_benches: tuple[Bench, Bench],
    acl_redis: RedisServer,
    admin: redis.Redis,
    bench_workers: Callable[[Bench], subprocess.Popen[str]],
) -> None:
    bench_a, bench_b = two_benches
    for bench in two_benches:
        result = create_users(bench)
        assert result.returncode == 0, result.stderr
        common = read_toml(bench.common_config_path)
        assert common["use_rq_auth"] is True and common["rq_username"] == f"bench-jobs-{common['bench_id']}"
        assert stat.S_IMODE(bench.common_config_path.stat().st_mode) == 0o600
        assert common["rq_password"] not in result.stdout + result.stderr
        assert "Saved the users to Redis's aclfile" in result.stdout
    saved = (acl_redis.socket.parent / "users.acl").read_text()
    for bench_id in ("a", "ab"):
        assert re.search(rf"^user bench-jobs-{bench_id} on .*#[0-9a-f]{{64}} ~rq:queue:{bench_id}:\*", saved, re.M)

    admin.acl_log_reset()  # create-rq-users' own check that CONFIG is refused
    processes = [bench_workers(bench) for bench in two_benches]
    jobs = {}
    for bench in two_benches:
        use_bench(bench)
        jobs[bench] = bench_jobs.enqueue("sample_app.tasks.echo", site=SITE, queue="default", record_id="r1")
    for bench, job in jobs.items():
        wait_for(lambda job=job: admin.hget(Job.key_for(job.id), "status") == b"finished", 60, f"{bench} job ran")
    workers_by_bench = {
        bench: [name.decode() for name in admin.smembers(WORKERS_BY_QUEUE_KEY % rq_queue_name(bid, "default"))]
        for bench, bid in ((bench_a, "a"), (bench_b, "ab"))
    }
    assert all(name.startswith("rq:worker:a.") for name in workers_by_bench[bench_a])
    assert all(name.startswith("rq:worker:ab.") for name in workers_by_bench[bench_b])

    # Everything a bench reads and writes while running, scheduling, listing and purging passes its ACL.
    for bench in two_benches:
        for command in (
            ("schedule", "--once"),
            ("show-pending-jobs", "--site", SITE),
            ("show-queue", "--site", SITE),
            ("purge-jobs", "--site", SITE, "--failed", "--yes"),
        ):
            listed = run_cli(*command, bench=bench)
            assert listed.returncode == 0, listed.stdout + listed.stderr
        doctor = run_cli("doctor", "--json", bench=bench)
        assert doctor.returncode in (0, 1) and "unexpected" not in doctor.stderr, doctor.stderr
        checks = {check["name"]: check for check in json.loads(doctor.stdout)["checks"]}
        username = read_toml(bench.common_config_path)["rq_username"]
        assert checks["redis-user"]["ok"] and checks["redis-user"]["detail"].startswith(f"logged in as {username},")
    # Refused and expected only: RQ's server-wide group and rate-limit registries (bench-jobs makes neither),
    # and doctor's CONFIG GET (it reads INFO instead).
    assert {entry["object"] for entry in admin.acl_log()} <= {"rq:clean_groups", "rq:rl-keys", "config|get"}

    as_a = login_as(acl_redis, bench_a)
    job_a, job_b = jobs[bench_a], jobs[bench_b]
    assert as_a.hget(Job.key_for(job_a.id), "status") == b"finished"  # its own: yes
    b_queue, b_keys = rq_queue_name("ab", "default"), Keys("ab")
    b_worker = workers_by_bench[bench_b][0]
    attempts: list[Callable[[], Any]] = [
        lambda: as_a.hgetall(Job.key_for(job_b.id)),
        lambda: as_a.delete(Job.key_for(job_b.id)),
        lambda: as_a.hset(Job.key_for(new_job_id("ab", SITE)), "status", "queued"),  # a forged job of ab
        lambda: as_a.lpush(f"rq:queue:{b_queue}", "forged"),
        lambda: as_a.lrange(f"rq:queue:{b_queue}", 0, -1),
        lambda: as_a.zrange(FinishedJobRegistry(b_queue, connection=admin).key, 0, -1),
        lambda: as_a.get(b_keys.heartbeat),
        lambda: as_a.hset(b_keys.taken, "x", "y"),
        lambda: as_a.hgetall(b_worker),
        lambda: as_a.publish(b_worker.replace("rq:worker:", "rq:pubsub:"), "{}"),
        lambda: as_a.flushall(),
        lambda: as_a.flushdb(),
        lambda: as_a.config_get("maxmemory"),
        lambda: as_a.config_set("maxmemory", "1"),
        lambda: as_a.keys("*"),
        lambda: as_a.acl_setuser("bench-jobs-a", enabled=True, keys=["*"]),
        lambda: as_a.client_kill_filter(_id="1"),
        lambda: as_a.set("rq:suspended", "1"),  # `rq suspend` would stop every bench's workers
    ]
    allowed = [index for index, attempt in enumerate(attempts) if not refused(attempt)]
    assert allowed == []
    assert as_a.exists("rq:suspended") == 0  # reading it is allowed: workers look whether they are suspended
    assert admin.hget(Job.key_for(job_b.id), "status") == b"finished"
    assert admin.llen(f"rq:queue:{b_queue}") == 0
    for process in processes:
        assert process.poll() is None


def test_a_pattern_of_bench_a_reaches_no_key_of_bench_ab(admin: redis.Redis) -> None:
    """Every key and channel RQ and bench-jobs name for a bench, built by their own functions: bench `a`'s user
    may run a command on each of its own, on none of bench `ab`'s (ACL DRYRUN: the rules as Redis reads them)."""
    password = "p" * 16
    admin.execute_command("ACL", "SETUSER", "bench-jobs-a", "reset", "on", f">{password}", *acl_rules("a"))

    def keys_of(bench_id: str) -> list[str]:
        queue = Queue(rq_queue_name(bench_id, "default"), connection=admin)
        job_id = new_job_id(bench_id, SITE)
        job = Job.create("x.y", id=job_id, connection=admin)
        worker = worker_name(bench_id)
        execution = Execution("e1", job_id, connection=admin)
        own = Keys(bench_id)
        return [
            queue.key,
            f"{queue.key}:intermediate",
            queue.registry_cleaning_key,
            *(
                registry(queue.name, connection=admin).key
                for registry in (
                    StartedJobRegistry,
                    FinishedJobRegistry,
                    FailedJobRegistry,
                    DeferredJobRegistry,
                    ScheduledJobRegistry,
                    CanceledJobRegistry,
                )
            ),
            SCHEDULER_LOCKING_KEY_TEMPLATE % queue.name,
            WORKERS_BY_QUEUE_KEY % queue.name,
            job.key,
            job.dependents_key,
            job.dependencies_key,
            Result.get_key(job_id),
            execution.key,
            f"rq:executions:{job_id}",
            Worker.redis_worker_namespace_prefix + worker,
            f"{Worker.redis_worker_namespace_prefix}{worker}:executions",
            SCHEDULER_KEY_TEMPLATE % worker,
            own.taken,
            own.heartbeat,
            own.fair("default"),
            own.worker_alive(worker),
            own.last_slots(SITE),
        ]

    def may(*command: str) -> bool:
        return admin.execute_command("ACL", "DRYRUN", "bench-jobs-a", *command) == b"OK"

    assert [key for key in keys_of("a") if not may("GET", key)] == []
    assert [key for key in keys_of("ab") if may("GET", key)] == []
    assert [key for key in keys_of("ab") if may("DEL", key)] == []
    assert may("PUBLISH", f"rq:pubsub:{worker_name('a')}", "x")
    assert not may("PUBLISH", f"rq:pubsub:{worker_name('ab')}", "x")
    assert may("SADD", "rq:queues", "x") and may("SADD", "rq:workers", "x")
    assert may("EXISTS", "rq:suspended") and not may("SET", "rq:suspended", "1")
    assert may("INFO", "memory") and not may("CONFIG", "GET", "maxmemory") and not may("FLUSHALL")
    # A live feed, or a list, of other benches' key and channel names.
    assert not may("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", "bench_jobs:ab:")
    assert not may("PUBSUB", "CHANNELS") and not may("PUBSUB", "SHARDCHANNELS")


def test_a_second_run_keeps_the_password_and_new_password_changes_it(
    two_benches: tuple[Bench, Bench], admin: redis.Redis
) -> None:
    bench = two_benches[0]
    assert create_users(bench).returncode == 0
    first = read_toml(bench.common_config_path)["rq_password"]
    again = create_users(bench, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] is False
    assert read_toml(bench.common_config_path)["rq_password"] == first
    assert create_users(bench, "--new-password").returncode == 0
    assert read_toml(bench.common_config_path)["rq_password"] != first


def test_print_aclfile_prints_only_hashed_users_on_stdout(two_benches: tuple[Bench, Bench], admin: redis.Redis) -> None:
    bench = two_benches[0]
    result = create_users(bench, "--print-aclfile")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("user ") for line in lines)
    assert any(re.match(r"user bench-jobs-a on .*#[0-9a-f]{64} ", line) for line in lines)
    assert read_toml(bench.common_config_path)["rq_password"] not in result.stdout
    assert "Created the Redis ACL user bench-jobs-a" in result.stderr


def test_without_the_admin_password_nothing_is_written(two_benches: tuple[Bench, Bench], admin: redis.Redis) -> None:
    bench = two_benches[0]
    result = run_cli("create-rq-users", bench=bench)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "BENCH_JOBS_REDIS_ADMIN_PASSWORD" in result.stderr
    assert "rq_username" not in read_toml(bench.common_config_path)


def test_use_rq_auth_without_a_password_is_a_config_error(two_benches: tuple[Bench, Bench]) -> None:
    with pytest.raises(ConfigError, match="create-rq-users"):
        rq_credentials({"use_rq_auth": True, "rq_username": "bench-jobs-a"})
    assert rq_credentials({"use_rq_auth": False, "rq_username": "u", "rq_password": "p"}) == {}
    bench = two_benches[0]
    common = bench.common_config_path
    common.write_text('use_rq_auth = true\nrq_username = "bench-jobs-a"\n' + common.read_text())
    with pytest.raises(ConfigError, match="rq_password is missing"):
        connect(load_bench_settings(bench))
