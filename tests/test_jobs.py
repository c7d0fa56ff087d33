"""enqueue, enqueue_doc, deduplication and after-commit transactions against a real Redis (DESIGN 4)."""

from __future__ import annotations

import json
import multiprocessing
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from redis.client import Pipeline
from rq.utils import utcformat

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import (
    bench_job_prefix,
    decode_part,
    encode_part,
    job_id_for,
    new_job_id,
    owner_of_job_id,
    scheduled_job_id,
    site_job_prefix,
)
from bench_jobs.errors import ConfigError, JobError
from bench_jobs.jobs import enqueue as jobs

DEFAULT_QUEUE = "rq:queue:testbench:default"


@pytest.fixture
def alpha(bench: Bench) -> Iterator[Bench]:
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        yield bench


def payload(client: redis.Redis, job_id: str) -> Any:
    return json.loads(zlib.decompress(client.hget(f"rq:job:{job_id}", "data")))


def test_enqueue_stores_a_json_payload_on_the_bench_queue(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="R1", job_name="first")
    assert redis_client.lrange(DEFAULT_QUEUE, 0, -1) == [job.id.encode()]
    assert job.timeout == 60
    func, instance, args, kwargs = payload(redis_client, job.id)
    assert (func, instance, args) == ("bench_jobs.jobs.runtime.run_job", None, [])
    assert kwargs == {
        "site": "alpha.test",
        "method": "sample_app.tasks.echo",
        "kwargs": {"record_id": "R1"},
        "job_name": "first",
        "event": None,
    }
    assert owner_of_job_id(job.id) == ("testbench", "alpha.test")


def test_kwargs_and_extra_keywords_merge_and_site_argument_wins(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue(
        "sample_app.tasks.echo", kwargs={"record_id": "A"}, n=2, site="beta.test", queue="long", timeout=7
    )
    data = payload(redis_client, job.id)[3]
    assert data["site"] == "beta.test" and data["kwargs"] == {"record_id": "A", "n": 2}
    assert job.origin == "testbench:long" and job.timeout == 7


def test_a_function_is_turned_into_its_dotted_path(alpha: Bench, redis_client: redis.Redis) -> None:
    from sample_app import tasks  # type: ignore[import-not-found]

    job = bench_jobs.enqueue(tasks.echo, record_id="F")
    assert payload(redis_client, job.id)[3]["method"] == "sample_app.tasks.echo"


def test_unknown_queue_lists_the_known_ones(alpha: Bench) -> None:
    with pytest.raises(ConfigError, match="Unknown queue 'reports'") as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", queue="reports", record_id="x")
    assert "short, default, long" in (caught.value.hint or "")


def test_custom_queue_from_config(bench: Bench, redis_client: redis.Redis) -> None:
    common = bench.common_config_path
    common.write_text(common.read_text() + "\n[workers.reports]\ntimeout = 900\n")
    use_bench(bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", queue="reports", record_id="x", site="alpha.test")
    assert job.origin == "testbench:reports" and job.timeout == 900


def test_arguments_that_are_not_json_are_refused_by_name(alpha: Bench, redis_client: redis.Redis) -> None:
    with pytest.raises(JobError, match="Argument 'doc' \\(object\\) is not JSON-serialisable") as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", doc=object())
    assert "IDs, not objects" in (caught.value.hint or "")
    assert redis_client.llen(DEFAULT_QUEUE) == 0


def test_a_method_outside_the_sites_apps_is_refused_at_enqueue(alpha: Bench) -> None:
    with pytest.raises(JobError, match=r"not inside the apps of site alpha\.test"):
        bench_jobs.enqueue("other_app.tasks.only_for_beta")
    with pytest.raises(JobError, match="not inside the apps"):
        bench_jobs.enqueue("os.system", command="true")


def test_without_a_site_enqueue_says_how_to_give_one(bench: Bench) -> None:
    use_bench(bench)
    with pytest.raises(JobError, match="No site to enqueue for"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x")


def test_at_front_goes_to_the_head_of_the_queue(alpha: Bench, redis_client: redis.Redis) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="1")
    urgent = bench_jobs.enqueue("sample_app.tasks.echo", record_id="2", at_front=True)
    assert redis_client.lindex(DEFAULT_QUEUE, 0) == urgent.id.encode()


def test_now_runs_inline_in_the_site_context_with_hooks(alpha: Bench, redis_client: redis.Redis) -> None:
    result = bench_jobs.enqueue("sample_app.tasks.echo", record_id="N", now=True, site="beta.test")
    assert result == {"record_id": "N", "site": "beta.test", "extra": {}}
    assert redis_client.llen(DEFAULT_QUEUE) == 0
    with pytest.raises(ValueError, match="inline"):
        bench_jobs.enqueue("sample_app.tasks.fail", message="inline", now=True)
    events = [
        json.loads(line)["event"] for line in (alpha.logs_dir / "alpha.test" / "calls.jsonl").read_text().splitlines()
    ]
    assert events == ["before_job", "fail", "after_job"]


ID_PARTS = [
    ("x", "a-b", "c"),
    ("x", "a", "b-c"),
    ("x-a", "b", "c"),
    ("x", "a.b", "c"),
    ("x", "a_2eb", "c"),
    ("x_2da", "b", "c"),
    ("y", "a", "b"),
    ("x", "a", "b"),
]


@pytest.mark.parametrize(("bench_id", "site", "job_id"), [*ID_PARTS, ("x", "a", ""), ("x-a", "b", "")])
def test_job_ids_encode_bench_site_and_id_without_collisions(bench_id: str, site: str, job_id: str) -> None:
    encoded = job_id_for(bench_id, site, job_id) if job_id else new_job_id(bench_id, site)
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in encoded)
    assert owner_of_job_id(encoded) == (bench_id, site)
    assert encoded.startswith(site_job_prefix(bench_id, site)) and encoded.startswith(bench_job_prefix(bench_id))
    assert decode_part(encode_part(job_id)) == job_id
    assert len({job_id_for(b, s, j) for b, s, j in ID_PARTS}) == len(ID_PARTS)
    assert len({scheduled_job_id(b, s, j, 60) for b, s, j in ID_PARTS}) == len(ID_PARTS)


@pytest.mark.parametrize("job_id", ["alpha_2etest-sync_2d1", "alpha_2etest--0f8c", "x-a_2Eb-c", "x--a", "x"])
def test_ids_of_an_older_version_or_not_made_by_bench_jobs_have_no_owner(job_id: str) -> None:
    assert owner_of_job_id(job_id) is None


def test_deduplicate_skips_while_queued_and_reuses_the_id_after_the_run(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    first = bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="sync-1", deduplicate=True)
    assert first is not None and first.id == job_id_for("testbench", "alpha.test", "sync-1")
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="sync-1", deduplicate=True) is None
    assert redis_client.llen(DEFAULT_QUEUE) == 1
    # Another site's job with the same job_id is a different job.
    assert (
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="sync-1", deduplicate=True, site="beta.test")
        is not None
    )
    redis_client.delete(DEFAULT_QUEUE)
    redis_client.hset(f"rq:job:{first.id}", "status", "failed")
    redis_client.expire(f"rq:job:{first.id}", 100)
    again = bench_jobs.enqueue("sample_app.tasks.echo", record_id="D2", job_id="sync-1", deduplicate=True)
    assert again is not None
    assert redis_client.hget(f"rq:job:{first.id}", "status") == b"queued"
    assert redis_client.ttl(f"rq:job:{first.id}") == -1, "the replaced job must not inherit the old expiry"
    assert payload(redis_client, first.id)[3]["kwargs"] == {"record_id": "D2"}


def test_deduplicate_blocks_only_while_the_running_worker_lives(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="nightly", deduplicate=True)
    redis_client.delete(DEFAULT_QUEUE)
    redis_client.hset(f"rq:job:{job.id}", mapping={"status": "started", "worker_name": "w1"})
    redis_client.set("bench_jobs:testbench:alive:w1", "otherhost:1", ex=30)
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="nightly", deduplicate=True) is None
    redis_client.delete("bench_jobs:testbench:alive:w1")
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="nightly", deduplicate=True) is not None


def test_deduplicate_after_a_redis_restart_waits_for_a_twin_that_started_before_it(restarted_bench: Bench) -> None:
    """Alive keys expire while Redis is down: a twin started before the restart may still run, so it blocks
    until its worker re-marks itself or the grace ends; a twin started since is judged by its key at once."""
    use_bench(restarted_bench)
    job = bench_jobs.enqueue("sample_app.tasks.echo", job_id="nightly", deduplicate=True, site="alpha.test")
    conn = job.connection
    conn.delete(DEFAULT_QUEUE)
    now = datetime.now(timezone.utc)
    started = {"status": "started", "worker_name": "w1", "started_at": utcformat(now - timedelta(minutes=2))}
    conn.hset(job.key, mapping=started)
    again = bench_jobs.enqueue("sample_app.tasks.echo", job_id="nightly", deduplicate=True, site="alpha.test")
    assert again is None and conn.llen(DEFAULT_QUEUE) == 0
    conn.hset(job.key, "started_at", utcformat(now + timedelta(seconds=5)))
    again = bench_jobs.enqueue("sample_app.tasks.echo", job_id="nightly", deduplicate=True, site="alpha.test")
    assert again is not None and conn.lrange(DEFAULT_QUEUE, 0, -1) == [job.id.encode()]


def test_a_reused_job_id_without_deduplicate_is_refused_not_run_twice(alpha: Bench, redis_client: redis.Redis) -> None:
    first = bench_jobs.enqueue("sample_app.tasks.echo", record_id="B", job_id="x-1", deduplicate=True)
    with pytest.raises(JobError, match="already queued or running") as caught:
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="C", job_id="x-1")
    assert "deduplicate=True" in (caught.value.hint or "")
    assert redis_client.lrange(DEFAULT_QUEUE, 0, -1) == [first.id.encode()]
    assert payload(redis_client, first.id)[3]["kwargs"] == {"record_id": "B"}
    redis_client.hset(f"rq:job:{first.id}", "status", "finished")
    redis_client.delete(DEFAULT_QUEUE)
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="D", job_id="x-1") is not None


def test_deduplicate_needs_a_job_id(alpha: Bench) -> None:
    with pytest.raises(JobError, match="needs a job_id"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", deduplicate=True)


def _enqueue_same_id(bench_root: str, barrier: Any, results: Any) -> None:
    use_bench(Bench(__import__("pathlib").Path(bench_root)))
    barrier.wait()
    job = bench_jobs.enqueue(
        "sample_app.tasks.echo", record_id="race", job_id="race", deduplicate=True, site="alpha.test"
    )
    results.put(job is not None)


def test_fifty_processes_deduplicating_one_job_id_leave_exactly_one(bench: Bench, redis_client: redis.Redis) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(50), context.Queue()
    processes = [context.Process(target=_enqueue_same_id, args=(str(bench.root), barrier, results)) for _ in range(50)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in processes]
    assert outcomes.count(True) == 1
    assert redis_client.lrange(DEFAULT_QUEUE, 0, -1) == [job_id_for("testbench", "alpha.test", "race").encode()]


@pytest.fixture
def pipeline_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts pipeline round trips (a spy on redis-py's Pipeline.execute; Redis is real)."""
    calls: list[int] = []
    original = Pipeline.execute

    def spy(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(self.command_stack))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", spy)
    return calls


def test_a_committed_transaction_sends_its_jobs_in_one_round_trip(
    alpha: Bench, redis_client: redis.Redis, pipeline_calls: list[int]
) -> None:
    with bench_jobs.transaction():
        for i in range(20):
            assert bench_jobs.enqueue("sample_app.tasks.echo", record_id=str(i), enqueue_after_commit=True) is None
        assert redis_client.llen(DEFAULT_QUEUE) == 0
        pipeline_calls.clear()
    assert redis_client.llen(DEFAULT_QUEUE) == 20
    assert len(pipeline_calls) == 1


def test_deduplicated_and_plain_jobs_commit_together(alpha: Bench, redis_client: redis.Redis) -> None:
    with bench_jobs.transaction():
        bench_jobs.enqueue(
            "sample_app.tasks.echo", record_id="d", job_id="once", deduplicate=True, enqueue_after_commit=True
        )
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="p", enqueue_after_commit=True)
        bench_jobs.enqueue(
            "sample_app.tasks.echo", record_id="d", job_id="once", deduplicate=True, enqueue_after_commit=True
        )
    ids = [i.decode() for i in redis_client.lrange(DEFAULT_QUEUE, 0, -1)]
    assert len(ids) == 2 and job_id_for("testbench", "alpha.test", "once") in ids


def test_a_transaction_that_raises_sends_nothing(alpha: Bench, redis_client: redis.Redis) -> None:
    with pytest.raises(RuntimeError), bench_jobs.transaction():
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="lost", enqueue_after_commit=True)
        raise RuntimeError("database said no")
    assert redis_client.llen(DEFAULT_QUEUE) == 0


def test_nested_rollback_drops_only_the_inner_jobs(alpha: Bench, redis_client: redis.Redis) -> None:
    bench_jobs.begin()
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="outer", enqueue_after_commit=True)
    bench_jobs.begin()
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="inner", enqueue_after_commit=True)
    assert bench_jobs.rollback() == 1
    sent = bench_jobs.commit()
    assert [payload(redis_client, job.id)[3]["kwargs"]["record_id"] for job in sent if job] == ["outer"]
    with pytest.raises(JobError, match="without begin"):
        bench_jobs.commit()


def test_after_commit_outside_a_transaction_goes_at_once(alpha: Bench, redis_client: redis.Redis) -> None:
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="now", enqueue_after_commit=True) is not None
    assert redis_client.llen(DEFAULT_QUEUE) == 1


def test_after_commit_handler_ties_jobs_to_an_apps_own_commit(alpha: Bench, redis_client: redis.Redis) -> None:
    callbacks: list[Any] = []
    bench_jobs.set_after_commit_handler(callbacks.append)
    try:
        assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="db", enqueue_after_commit=True) is None
        assert redis_client.llen(DEFAULT_QUEUE) == 0
        callbacks.pop()()
        assert redis_client.llen(DEFAULT_QUEUE) == 1
    finally:
        bench_jobs.set_after_commit_handler(None)


def test_enqueue_doc_uses_doc_types_and_the_queues_timeout(alpha: Bench, redis_client: redis.Redis) -> None:
    job = bench_jobs.enqueue_doc("Invoice", "INV-1", "submit", queue="long", note="paid")
    assert job.timeout == 120
    data = payload(redis_client, job.id)[3]
    assert data["method"] == "sample_app.tasks.Invoice"
    assert data["doc"] == {"doctype": "Invoice", "name": "INV-1", "method": "submit"}
    assert data["kwargs"] == {"note": "paid"}
    assert data["job_name"] == "Invoice INV-1: submit"
    assert bench_jobs.enqueue_doc("Invoice", "INV-2", "submit", timeout=5).timeout == 5
    assert bench_jobs.enqueue_doc("Invoice", "INV-3", "submit", now=True) == "submitted INV-3"
    with pytest.raises(JobError, match="Unknown doctype 'Order'") as caught:
        bench_jobs.enqueue_doc("Order", "O-1", "submit")
    assert "Invoice" in (caught.value.hint or "")


def test_retry_uses_growing_documented_intervals(alpha: Bench) -> None:
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="r", retry=3)
    assert job.retries_left == 3
    assert job.retry_intervals == [10, 60, 300]
    assert jobs.DEFAULT_RETRY_INTERVALS_S[:3] == (10, 60, 300)


def calls(bench: Bench, site: str = "alpha.test") -> list[dict[str, Any]]:
    path = bench.logs_dir / site / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_job_hooks_get_frappes_keywords_filtered_by_their_signature(alpha: Bench, redis_client: redis.Redis) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="H", now=True)
    with pytest.raises(ValueError, match="hooked"):
        bench_jobs.enqueue("sample_app.tasks.fail", message="hooked", now=True)
    before, _, after, before_fail, _, after_fail = calls(alpha)
    # `before` takes **kwargs: every keyword; `after` takes (method, result): only those two.
    assert {k: before[k] for k in ("method", "kwargs", "transaction_type")} == {
        "method": "sample_app.tasks.echo",
        "kwargs": {"record_id": "H"},
        "transaction_type": "job",
    }
    assert "result" not in before
    assert after["method"] == "sample_app.tasks.echo" and "kwargs" not in after
    assert after["result"] == {"record_id": "H", "site": "alpha.test", "extra": {}}
    assert before_fail["kwargs"] == {"message": "hooked"}
    assert (after_fail["method"], after_fail["result"]) == ("sample_app.tasks.fail", None)


def test_is_async_false_runs_now_and_event_never_reaches_the_method(alpha: Bench, redis_client: redis.Redis) -> None:
    result = bench_jobs.enqueue("sample_app.tasks.echo", record_id="A", is_async=False, event="sync")
    assert result == {"record_id": "A", "site": "alpha.test", "extra": {}}
    assert redis_client.llen(DEFAULT_QUEUE) == 0
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="Q", event="invoice_sync", colour="red")
    _, _, _, data = payload(redis_client, job.id)
    assert data["kwargs"] == {"record_id": "Q", "colour": "red"}, "unknown keywords still go to the method"
    assert data["event"] == "invoice_sync"
    with pytest.raises(JobError, match="event must be a string"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="Q", event=["x"])
    doc = bench_jobs.enqueue_doc("Invoice", "INV-9", "submit", event="billing", is_async=False)
    assert doc == "submitted INV-9"


def test_callbacks_travel_as_checked_paths_in_the_payload_not_in_rqs_fields(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    from sample_app import callbacks

    job = bench_jobs.enqueue(
        "sample_app.tasks.echo", record_id="C", on_success=callbacks.succeeded, on_failure="sample_app.callbacks.failed"
    )
    _, _, _, data = payload(redis_client, job.id)
    assert (data["on_success"], data["on_failure"]) == ("sample_app.callbacks.succeeded", "sample_app.callbacks.failed")
    assert "on_success" not in data["kwargs"] and "on_failure" not in data["kwargs"]
    stored = redis_client.hgetall(f"rq:job:{job.id}")
    names = (b"success_callback_name", b"failure_callback_name", b"stopped_callback_name")
    assert not any(stored.get(name) for name in names), "RQ's callback fields stay empty"
    for callback in ("json.dumps", json.dumps, "other_app.tasks.only_for_beta"):
        with pytest.raises(JobError, match=r"is not inside the apps of site alpha\.test"):
            bench_jobs.enqueue("sample_app.tasks.echo", record_id="C", on_failure=callback)
    assert redis_client.llen(DEFAULT_QUEUE) == 1


def test_job_status_lookups_are_scoped_to_the_site(alpha: Bench, redis_client: redis.Redis) -> None:
    from rq.job import JobStatus

    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="S", job_id="sync-7")
    assert bench_jobs.get_job_status("sync-7") == JobStatus.QUEUED == "queued"
    assert bench_jobs.is_job_enqueued("sync-7") is True
    assert bench_jobs.get_job_status("sync-7", site="beta.test") is None, "the same id in another site"
    assert bench_jobs.is_job_enqueued("sync-7", site="beta.test") is False
    assert bench_jobs.get_job_status("never-made") is None and bench_jobs.is_job_enqueued("never-made") is False
    redis_client.delete(DEFAULT_QUEUE)
    redis_client.hset(job.key, mapping={"status": "started", "worker_name": "w1"})
    redis_client.set("bench_jobs:testbench:alive:w1", "otherhost:1", ex=30)
    assert bench_jobs.is_job_enqueued("sync-7") is True
    redis_client.delete("bench_jobs:testbench:alive:w1")
    assert bench_jobs.get_job_status("sync-7") == "started"
    assert bench_jobs.is_job_enqueued("sync-7") is False, "its worker is dead: deduplicate would queue it again"
    redis_client.hset(job.key, "status", "finished")
    assert bench_jobs.is_job_enqueued("sync-7") is False


def test_get_jobs_lists_queued_and_running_jobs_per_site_as_frappe_does(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="1", job_name="first")
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="2", queue="long")
    bench_jobs.enqueue("sample_app.tasks.chatty", site="beta.test")
    assert bench_jobs.get_jobs(site="alpha.test") == {"alpha.test": ["sample_app.tasks.echo"] * 2}
    everyone = bench_jobs.get_jobs()
    assert everyone == {"alpha.test": ["sample_app.tasks.echo"] * 2, "beta.test": ["sample_app.tasks.chatty"]}
    assert bench_jobs.get_jobs(site="alpha.test", queue="long") == {"alpha.test": ["sample_app.tasks.echo"]}
    assert bench_jobs.get_jobs(queue=["short"])["alpha.test"] == [], "a defaultdict, as in Frappe"
    assert bench_jobs.get_jobs(site="alpha.test", key="job_name")["alpha.test"] == ["first", "sample_app.tasks.echo"]
    assert bench_jobs.get_jobs(site="alpha.test", key="record_id")["alpha.test"] == ["1", "2"]
    with pytest.raises(ConfigError, match="nope"):
        bench_jobs.get_jobs(queue="nope")


def test_a_site_whose_hooks_module_does_not_import_runs_no_job(alpha: Bench, redis_client: redis.Redis) -> None:
    """Its before_job/after_job hooks are unknown, so the worker (run_job) refuses as for a broken hook path."""
    from bench_jobs.jobs.runtime import run_job

    hooks = alpha.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(hooks.read_text() + "raise RuntimeError('hooks broke')\n")
    with pytest.raises(JobError, match=r"broken hook: sample_app\.hooks: .*RuntimeError: hooks broke"):
        run_job(site="alpha.test", method="sample_app.tasks.echo", kwargs={"record_id": "R"})
    assert calls(alpha) == []


def test_get_jobs_of_an_unknown_site_says_so(alpha: Bench, redis_client: redis.Redis) -> None:
    with pytest.raises(ConfigError, match=r"gamma\.test"):
        bench_jobs.get_jobs(site="gamma.test")
