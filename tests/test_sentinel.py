"""Redis behind Sentinel (Frappe's redis_queue_sentinel_* keys) and redis_queue_wait_replicas, on a real
master, replica and three Sentinels (`redis-server --sentinel`) that the tests start."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sentinel_support import SERVICE, SentinelSet, free_port, start_sentinel_set
from support import kill_tree, make_bench, start_cli, wait_for

import bench_jobs
from bench_jobs.core import connection
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.errors import EXIT_REDIS, ConfigError, NotReplicated, RedisUnavailable
from bench_jobs.ops.doctor import run_doctor
from bench_jobs.scheduler.claims import Claimer

NOWHERE = "redis://127.0.0.1:1"  # redis_queue: with Sentinel it gives only the database number


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """One master, one replica, three Sentinels, shared by the tests that do not fail the master over."""
    found = start_sentinel_set(tmp_path_factory.mktemp("sentinels"))
    yield found
    found.stop()


def sentinel_bench(root: Path, found: SentinelSet, extra: str = "", wait_replicas: int = 0) -> Bench:
    bench = make_bench(root, NOWHERE)
    common = bench.common_config_path
    text = common.read_text()
    head, sep, tail = text.partition("\n[workers.short]")
    common.write_text(head + "\n" + found.config(wait_replicas) + extra + sep + tail)
    found.client(found.master_port()).flushall()
    use_bench(bench)
    return bench


def commandstat(client: redis.Redis, command: str) -> int:
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# --- config ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('redis_queue_sentinel_enabled = "yes"', "true or false"),
        ('redis_queue_sentinels = "10.0.0.5:26379"', '"host:port"'),
        ('redis_queue_sentinels = ["10.0.0.5"]', '"host:port"'),
        ('redis_queue_sentinels = ["10.0.0.5:99999"]', '"host:port"'),
        ("redis_queue_sentinels = []", '"host:port"'),
        ('redis_queue_master_service = " "', "non-empty"),
        ("redis_queue_master_password = 1234", "a string"),
        ("redis_queue_wait_replicas = -1", "0 or more"),
        ("redis_queue_wait_replicas = true", "0 or more"),
        ("redis_queue_wait_timeout_ms = 60000", "from 1 to 9000"),
        ("redis_queue_sentinel_enabled = true", "redis_queue_sentinels and redis_queue_master_service"),
        ('redis_queue_sentinel_enabled = true\nredis_queue_sentinels = ["h:1"]', "redis_queue_master_service"),
    ],
)
def test_bad_sentinel_and_wait_keys_are_clear_config_errors(tmp_path: Path, line: str, named: str) -> None:
    bench = make_bench(tmp_path / "bench", NOWHERE)
    common = bench.common_config_path
    common.write_text(line + "\n" + common.read_text())
    with pytest.raises(ConfigError) as caught:
        load_bench_settings(bench)
    assert named in f"{caught.value.message} {caught.value.hint}"
    assert "1234" not in str(caught.value)  # a password given as a number is never echoed


def test_sentinel_keys_are_bench_wide(tmp_path: Path) -> None:
    bench = make_bench(tmp_path / "bench", NOWHERE)
    site_config = bench.site_config_path("alpha.test")
    site_config.write_text("redis_queue_wait_replicas = 1\n" + site_config.read_text())
    with pytest.raises(ConfigError, match="bench-wide"):
        bench_jobs.core.config.load_site_settings(bench, "alpha.test")


def test_sentinel_settings_are_read_and_never_show_a_password(tmp_path: Path) -> None:
    bench = make_bench(tmp_path / "bench", "redis://127.0.0.1:1/3")
    common = bench.common_config_path
    common.write_text(
        'redis_queue_sentinel_enabled = true\nredis_queue_sentinels = ["10.0.0.5:26379", "[::1]:26380"]\n'
        'redis_queue_master_service = "mymaster"\nredis_queue_master_password = "s3cret-pw"\n'
        'redis_queue_sentinel_password = "s3ntinel-pw"\nredis_queue_wait_replicas = 2\n' + common.read_text()
    )
    settings = load_bench_settings(bench)
    assert settings.sentinel is not None
    assert settings.sentinel.sentinels == (("10.0.0.5", 26379), ("::1", 26380))
    assert settings.sentinel.service == "mymaster"
    assert settings.sentinel.master_password == "s3cret-pw"
    assert settings.wait_replicas == 2 and settings.wait_timeout_ms == 2000
    shown = f"{settings!r} {connection.shown_target(settings)}"
    assert "s3cret-pw" not in shown and "s3ntinel-pw" not in shown
    conn = connection.connect(settings)
    assert conn.connection_pool.connection_kwargs["db"] == 3  # the database still comes from redis_queue
    assert conn.connection_pool.service_name == "mymaster"  # type: ignore[attr-defined]


# --- the client, WAIT and doctor on a live Sentinel set ---------------------------------------------------------


def test_enqueue_goes_to_the_master_the_sentinels_name(tmp_path: Path, sentinels: SentinelSet) -> None:
    sentinel_bench(tmp_path / "bench", sentinels)
    job = bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id="A-1")
    assert job is not None
    master = sentinels.client(sentinels.master_port())
    assert master.exists(job.key)


def test_wait_for_one_replica_returns_once_the_replica_has_the_job(tmp_path: Path, sentinels: SentinelSet) -> None:
    sentinel_bench(tmp_path / "bench", sentinels, wait_replicas=1)
    master = sentinels.client(sentinels.master_port())
    waits_before = commandstat(master, "wait")
    job = bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id="A-2")
    assert job is not None
    assert commandstat(master, "wait") == waits_before + 1  # in the enqueue's own round trip
    replica_port = next(port for port in sentinels.servers if port != sentinels.master_port())
    assert sentinels.client(replica_port).exists(job.key)


def test_wait_for_more_replicas_than_exist_is_an_error_not_a_silent_success(
    tmp_path: Path, sentinels: SentinelSet
) -> None:
    sentinel_bench(tmp_path / "bench", sentinels, "redis_queue_wait_timeout_ms = 300\n", wait_replicas=2)
    started = time.monotonic()
    with pytest.raises(NotReplicated) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id="A-3")
    assert time.monotonic() - started >= 0.25  # WAIT waited its timeout for the missing replica
    error = caught.value
    assert error.exit_code == EXIT_REDIS
    assert "only 1 of the 2 replica(s)" in error.message and "300 ms" in error.message
    assert error.job_ids and "IS queued" in (error.hint or "")
    assert sentinels.client(sentinels.master_port()).exists(f"rq:job:{error.job_ids[0]}")


def test_an_enqueue_whose_reply_was_lost_still_waits_for_the_replicas(
    tmp_path: Path, sentinels: SentinelSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write landed but its reply (WAIT's too) was lost: the lookup that finds the job must not report it
    queued until the replicas have it; with too few, NotReplicated names the job, never a silent success."""
    import redis.client

    sentinel_bench(tmp_path / "bench", sentinels, "redis_queue_wait_timeout_ms = 300\n", wait_replicas=2)
    real_execute = redis.client.Pipeline.execute
    cut: list[bool] = []

    def execute_then_lose_the_reply(self: redis.client.Pipeline, raise_on_error: bool = True) -> Any:
        waits = any(args[0] == "WAIT" for args, _ in self.command_stack)  # execute() empties the stack
        results = real_execute(self, raise_on_error)
        if waits and not cut:
            cut.append(True)
            raise redis.ConnectionError("Connection reset by peer (the reply was lost)")
        return results

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute_then_lose_the_reply)
    with pytest.raises(NotReplicated) as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id="lost-reply")
    assert cut and caught.value.job_ids
    assert sentinels.client(sentinels.master_port()).exists(f"rq:job:{caught.value.job_ids[0]}")


def test_slot_claims_wait_for_the_replicas_too(tmp_path: Path, sentinels: SentinelSet) -> None:
    bench = sentinel_bench(tmp_path / "bench", sentinels, "redis_queue_wait_timeout_ms = 200\n", wait_replicas=2)
    conn = connection.connect(load_bench_settings(bench))
    claimer = Claimer(conn, Keys("testbench"))
    with pytest.raises(NotReplicated, match="slot claims"):
        claimer.run([], 0, 0, ["alpha.test"])


def test_doctor_shows_the_master_replicas_and_sentinels(tmp_path: Path, sentinels: SentinelSet) -> None:
    bench = sentinel_bench(tmp_path / "bench", sentinels, wait_replicas=1)
    checks = {check.name: check for check in run_doctor(bench, ["alpha.test"]).checks}
    master_port = sentinels.master_port()
    replica_port = next(port for port in sentinels.servers if port != master_port)
    seen = checks["redis-sentinels"]
    assert seen.ok and not seen.warning
    assert f"master 127.0.0.1:{master_port}" in seen.detail and SERVICE in seen.detail
    assert all(address in seen.detail for address in sentinels.addresses)
    replicas = checks["redis-replicas"]
    assert replicas.ok and f"127.0.0.1:{replica_port}" in replicas.detail and "wait for 1" in replicas.detail


def test_doctor_warns_when_a_sentinel_does_not_answer_and_fails_when_waits_cannot_be_met(
    tmp_path: Path, sentinels: SentinelSet
) -> None:
    bench = sentinel_bench(tmp_path / "bench", sentinels, wait_replicas=2)
    common = bench.common_config_path
    dead = f"127.0.0.1:{free_port()}"
    common.write_text(common.read_text().replace('redis_queue_sentinels = ["', f'redis_queue_sentinels = ["{dead}", "'))
    checks = {check.name: check for check in run_doctor(bench, ["alpha.test"]).checks}
    assert checks["redis-sentinels"].warning and "1 Sentinel(s) do not answer" in checks["redis-sentinels"].detail
    assert f"{dead}: does not answer" in checks["redis-sentinels"].detail
    assert not checks["redis-replicas"].ok and "redis_queue_wait_replicas is 2" in checks["redis-replicas"].detail


# --- failovers ----------------------------------------------------------------------------------------------


def test_a_coordinated_failover_is_followed_by_the_same_client(tmp_path: Path) -> None:
    """SENTINEL FAILOVER demotes a live master: its clients get READONLY, which must read as "the master
    moved" (reconnect through the Sentinels), and the scripts are loaded again on the new master."""
    found = start_sentinel_set(tmp_path / "set")
    try:
        sentinel_bench(tmp_path / "bench", found)
        first = bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", job_id="before", deduplicate=True)
        assert first is not None
        old = found.master_port()
        found.sentinel().execute_command("SENTINEL", "FAILOVER", SERVICE)
        new = found.wait_for_failover(old)
        # Until Sentinel demotes it, the old master still takes writes from clients connected to it (only
        # redis_queue_wait_replicas turns those into errors): this test is about what comes after.
        wait_for(lambda: found.client(old).execute_command("ROLE")[0] == b"slave", 30, "the old master's demotion")
        refusals = 0
        for _ in range(20):
            try:
                job = bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", job_id="after", deduplicate=True)
                break
            except RedisUnavailable as exc:  # the write met READONLY: sure it was NOT queued, never "maybe"
                assert "was NOT queued" in exc.message, exc.message
                refusals += 1
                time.sleep(0.2)
        else:
            pytest.fail("enqueue never reached the new master")
        assert job is not None and refusals <= 2
        assert found.client(new).exists(job.key) and found.client(new).exists(first.key)
    finally:
        found.stop()


def _ran(bench: Bench) -> Counter[str]:
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["record_id"] for line in lines if '"echo"' in line)


@pytest.mark.slow
def test_a_killed_master_loses_no_acknowledged_job_and_the_worker_goes_on(tmp_path: Path) -> None:
    """SIGKILL the master under a steady enqueue with a worker running: with wait_replicas = 1 every
    acknowledged job runs exactly once, no job runs twice, and the same worker process serves the new master.
    Two replicas: after the failover the new master keeps one to wait for."""
    found = start_sentinel_set(tmp_path / "set", replicas=2)
    worker = None
    try:
        bench = sentinel_bench(tmp_path / "bench", found, wait_replicas=1)
        worker = start_cli(bench, "worker", "--queue", "default")
        wait_for(lambda: found.client(found.master_port()).keys("rq:worker:*"), 30, "the worker to register")
        acked: list[str] = []
        refused: list[str] = []
        stop = threading.Event()

        def produce() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                record_id = f"J{n}"
                try:
                    bench_jobs.enqueue("sample_app.tasks.echo", site="alpha.test", record_id=record_id)
                    acked.append(record_id)
                except RedisUnavailable:
                    refused.append(record_id)
                    time.sleep(0.1)
                time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: len(acked) >= 40, 30, "40 acknowledged jobs")
        old = found.kill_master()
        killed_at = len(acked)
        found.wait_for_failover(old)
        wait_for(lambda: len(acked) >= killed_at + 40, 60, "40 more jobs acknowledged by the new master")
        stop.set()
        producer.join(30)
        wait_for(lambda: set(acked) <= set(_ran(bench)), 90, "every acknowledged job to run")
        time.sleep(1.0)  # a job run twice would show up now
        ran = _ran(bench)
        assert [record_id for record_id, times in ran.items() if times > 1] == []
        assert [record_id for record_id in acked if ran[record_id] != 1] == []
        assert worker.poll() is None, "the worker exited instead of following the failover"
        assert ran[acked[-1]] == 1  # a job acknowledged by the new master ran: the same worker went on
    finally:
        if worker is not None and worker.poll() is None:
            kill_tree(worker)
        found.stop()
