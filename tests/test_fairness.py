"""Sites take turns in a queue, a site's cap holds across workers, and an idle worker wakes on a push."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from support import run_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import load_bench_settings
from bench_jobs.core.connection import connect
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import Keys
from bench_jobs.jobs.fair import publish_limits, reindex, site_line, site_loads
from bench_jobs.worker.serve import worker_queue
from bench_jobs.worker.take import WorkerQueue, taker

KEYS = Keys("testbench")
ALPHA, BETA = "alpha.test", "beta.test"


def enqueue(site: str, n: int, queue: str = "default", **kwargs: Any) -> list[str]:
    return [
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"{site}-{i}", queue=queue, site=site, **kwargs).id
        for i in range(n)
    ]


def take_all(bench: Bench, queues: list[str], limit: int = 1000) -> list[Job]:
    """Take jobs (burst sweeps) until none can be taken; the taken ones stay in the intermediate lists."""
    use_bench(bench)
    settings = load_bench_settings(bench)
    conn = connect(settings)
    served = [worker_queue(conn, settings, name) for name in queues]
    token = taker.set("test-taker")
    taken: list[Job] = []
    try:
        while len(taken) < limit:
            hit = WorkerQueue.dequeue_any(served, None, connection=conn, serializer=JSONSerializer)
            if hit is None:
                return taken
            taken.append(hit[0])
    finally:
        taker.reset(token)
    return taken


def site_of(job: Job) -> str:
    return str(json.loads(job.data)["site"]) if isinstance(job.data, (bytes, str)) else job.kwargs["site"]


def sites_in_order(jobs: list[Job]) -> list[str]:
    return [job.kwargs["site"] for job in jobs]


def test_a_burst_of_one_site_does_not_delay_another_site_queued_after_it(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    big = enqueue(ALPHA, 30)
    small = enqueue(BETA, 3)
    taken = take_all(bench, ["default"])
    order = [job.id for job in taken]
    assert sites_in_order(taken)[:6] == [ALPHA, BETA] * 3, "the sites take turns"
    assert [i for i in order if i in small] == small and [i for i in order if i in big] == big, "FIFO in a site"
    assert len(order) == 33 and set(order) == set(big + small)


def test_at_front_jumps_its_own_sites_line_only(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    first = enqueue(ALPHA, 2)
    other = enqueue(BETA, 1)
    urgent = enqueue(ALPHA, 1, at_front=True)
    taken = [job.id for job in take_all(bench, ["default"])]
    assert taken == [urgent[0], other[0], first[0], first[1]]


def test_queue_weight_gives_a_site_that_many_turns(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    publish_limits(redis_client, "testbench", [(ALPHA, None, 2), (BETA, None, 1)])
    enqueue(ALPHA, 20)
    enqueue(BETA, 20)
    first_nine = sites_in_order(take_all(bench, ["default"], limit=9))
    assert first_nine.count(ALPHA) == 6 and first_nine.count(BETA) == 3


def test_the_queues_are_served_in_order_and_sites_take_turns_in_each(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    long_jobs = enqueue(ALPHA, 2, queue="long")
    short_jobs = enqueue(ALPHA, 2, queue="short") + enqueue(BETA, 1, queue="short")
    taken = [job.id for job in take_all(bench, ["short", "default", "long"])]
    assert taken == [short_jobs[0], short_jobs[2], short_jobs[1], *long_jobs]


def test_a_capped_site_waits_while_others_go_on_and_its_freed_place_is_taken(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    publish_limits(redis_client, "testbench", [(ALPHA, 1, 1)])
    capped = enqueue(ALPHA, 3)
    other = enqueue(BETA, 2)
    taken = [job.id for job in take_all(bench, ["default"])]
    assert taken == [capped[0], *other], "one alpha job at a time; beta's go on"
    running = KEYS.running(site_line(ALPHA))
    assert redis_client.zrange(running, 0, -1) == [f"{capped[0]}|test-taker".encode()], "a place per take"
    redis_client.zrem(running, f"{capped[0]}|test-taker")  # its worker ended it (BenchWorker.job_ended)
    assert [job.id for job in take_all(bench, ["default"])] == [capped[1]]
    redis_client.zadd(running, {f"{capped[1]}|test-taker": 1})  # its worker died: the lease ran out long ago
    assert [job.id for job in take_all(bench, ["default"])] == [capped[2]]
    loads = {load.site: load for load in site_loads(redis_client, "testbench", [ALPHA, BETA], ["default"])}
    assert (loads[ALPHA].cap, loads[ALPHA].running, loads[ALPHA].queued) == (1, 1, 0)
    assert loads[ALPHA].at_cap and loads[BETA].cap is None


def test_ids_pushed_by_another_tool_are_indexed_and_ids_removed_by_one_are_dropped(
    bench: Bench, redis_client: redis.Redis
) -> None:
    use_bench(bench)
    ours = enqueue(ALPHA, 2)
    queue_key = "rq:queue:testbench:default"
    redis_client.lrem(queue_key, 1, ours[0])  # deleted by hand: its index entry is stale
    foreign = Job.create("sample_app.tasks.echo", connection=redis_client, serializer=JSONSerializer, id="plain-rq")
    foreign.save()
    redis_client.rpush(queue_key, foreign.id)  # pushed like plain RQ would: not indexed
    settings = load_bench_settings(bench)
    queue = worker_queue(connect(settings), settings, "default")
    assert [job.id for job in take_all(bench, ["default"])] == [ours[1]], "the stale id is dropped"
    assert reindex(redis_client, queue) == 1, "a stale id was met: the index is rebuilt from the list"
    assert reindex(redis_client, queue) == -1, "they agree now"
    assert [job.id for job in take_all(bench, ["default"])] == [foreign.id]
    redis_client.rpush(queue_key, foreign.id)  # pushed again by hand: the counts differ
    assert reindex(redis_client, queue) == 1


def test_a_bad_id_on_a_queue_is_set_aside_and_the_worker_goes_on(bench: Bench, redis_client: redis.Redis) -> None:
    """`HSET rq:job:x.y status queued` and `RPUSH` of `x.y`: RQ cannot build a job from that id, and every
    worker that took it quit (exit 0, so no supervisor restarted it) and gave it back to the next one."""
    use_bench(bench)
    redis_client.hset("rq:job:x.y", "status", "queued")
    redis_client.rpush("rq:queue:testbench:default", "x.y")
    good = enqueue(BETA, 1)
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Job.fetch(good[0], connection=redis_client, serializer=JSONSerializer).get_status() == "finished"
    reason = redis_client.hget(KEYS.set_aside, "x.y")
    assert reason is not None and b"cannot be read" in reason
    assert redis_client.llen("rq:queue:testbench:default") == 0
    assert redis_client.llen("rq:queue:testbench:default:intermediate") == 0


def test_a_capped_sites_jobs_never_overlap_across_workers_while_other_sites_go_on(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    (bench.root / "sites" / ALPHA / "site_config.toml").write_text(
        'timezone = "UTC"\nscheduler_enabled = true\nmax_concurrent_jobs = 1\n'
    )
    use_bench(bench)
    for n in range(4):
        bench_jobs.enqueue("sample_app.tasks.timed", seconds=0.4, tag=f"a{n}", site=ALPHA)
    for n in range(4):
        bench_jobs.enqueue("sample_app.tasks.timed", seconds=0.4, tag=f"b{n}", site=BETA)
    workers("--queue", "default", "--num-workers", "3")

    def spans(site: str) -> list[tuple[float, float]]:
        path = bench.logs_dir / site / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return sorted((r["started"], r["ended"]) for r in map(json.loads, lines) if r["event"] == "timed")

    wait_for(lambda: len(spans(ALPHA)) == 4 and len(spans(BETA)) == 4, 90, "every job to run")
    alpha = spans(ALPHA)
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(alpha)), f"alpha overlapped: {alpha}"
    beta = spans(BETA)
    assert any(earlier[1] > later[0] for earlier, later in itertools.pairwise(beta)), "uncapped beta ran side by side"


def test_an_idle_worker_blocks_instead_of_polling_and_starts_a_new_job_at_once(
    bench: Bench, redis_client: redis.Redis, workers: Any
) -> None:
    use_bench(bench)
    workers("--queue", "short,default,long")
    wait_for(lambda: redis_client.smembers("rq:workers"), 30, "the worker to register")
    time.sleep(1.5)
    blocked = [c for c in redis_client.client_list() if c.get("cmd") == "blpop"]
    assert blocked, "the idle worker waits in BLPOP on its queues' wake lists"
    before = int(redis_client.info("stats")["total_commands_processed"])
    time.sleep(3.0)
    idle_rate = (int(redis_client.info("stats")["total_commands_processed"]) - before - 2) / 3.0
    assert idle_rate < 5, f"{idle_rate:.1f} commands/s while idle"
    latencies = []
    for n in range(10):
        job = bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"wake-{n}", site=ALPHA)
        wait_for(lambda job=job: job.get_status(refresh=True) == "finished", 30, "the job to finish")
        job.refresh()
        assert job.started_at is not None and job.enqueued_at is not None
        latencies.append((job.started_at - job.enqueued_at).total_seconds())
        time.sleep(0.3)  # idle again: blocked in BLPOP
    assert statistics.median(latencies) < 0.08, f"pick-up latencies: {latencies}"


def test_show_queue_doctor_and_metrics_show_a_site_waiting_on_its_cap(bench: Bench, redis_client: redis.Redis) -> None:
    (bench.root / "sites" / ALPHA / "site_config.toml").write_text('timezone = "UTC"\nmax_concurrent_jobs = 1\n')
    use_bench(bench)
    publish_limits(redis_client, "testbench", [(ALPHA, 1, 1)])  # as every worker does from the site configs
    enqueue(ALPHA, 3)
    assert len(take_all(bench, ["default"])) == 1, "the cap lets one run"

    shown = run_cli("show-queue", "--json", bench=bench)
    sites = {row["site"]: row for row in json.loads(shown.stdout)["sites"]}
    assert sites[ALPHA] == {"site": ALPHA, "cap": 1, "running": 1, "queued": 2, "at_cap": True}
    assert "1 (at cap)" in run_cli("show-queue", bench=bench).stdout

    doctor = json.loads(run_cli("--site", ALPHA, "doctor", "--json", bench=bench).stdout)
    cap_check = next(check for check in doctor["checks"] if check["name"] == f"cap:{ALPHA}")
    assert cap_check["ok"] and cap_check["level"] == "warning" and "1 of max_concurrent_jobs 1" in cap_check["detail"]

    from test_dashboard import client_of

    for page in ("/", f"/sites/{ALPHA}"):  # the dashboard shows doctor's checks, the cap's among them
        text = client_of(bench).get(page).text
        assert f"cap:{ALPHA}" in text and "1 of max_concurrent_jobs 1 running, 2 queued" in text, page

    metrics = run_cli("metrics", bench=bench).stdout
    assert f'bench_jobs_site_waiting_on_cap_jobs{{site="{ALPHA}"}} 2.0' in metrics
    assert f'bench_jobs_site_running_jobs{{site="{ALPHA}"}} 1.0' in metrics


def test_purging_a_sites_jobs_takes_them_out_of_its_line_too(bench: Bench, redis_client: redis.Redis) -> None:
    use_bench(bench)
    enqueue(ALPHA, 5)
    kept = enqueue(BETA, 2)
    result = run_cli("--site", ALPHA, "purge-jobs", "--yes", "--json", bench=bench)
    assert json.loads(result.stdout) == {"purged": 5}
    assert redis_client.zrange(KEYS.fair("default"), 0, -1) == [site_line(BETA).encode()]
    settings = load_bench_settings(bench)
    assert reindex(redis_client, worker_queue(connect(settings), settings, "default")) == -1, "index and list agree"
    assert [job.id for job in take_all(bench, ["default"])] == kept


def test_sites_beyond_a_page_of_capped_sites_are_still_served(bench: Bench, redis_client: redis.Redis) -> None:
    """The take reads the turns a page at a time; a page of sites all at their cap must not hide the rest."""
    use_bench(bench)
    settings = load_bench_settings(bench)
    queue = worker_queue(connect(settings), settings, "default")
    names = [f"s{n:03d}.test" for n in range(70)]
    publish_limits(redis_client, "testbench", [(name, 1, 1) for name in names[1:69]])
    for name in names:  # ids of 70 sites, pushed as bench-jobs pushes them
        job = Job.create("sample_app.tasks.echo", connection=redis_client, serializer=JSONSerializer,
                         id=f"testbench-{site_line(name)}--{name[1:4]}")  # fmt: skip
        job.save()
        queue.push_job_id(job.id)
    for name in names[1:69]:
        redis_client.zadd(KEYS.running(site_line(name)), {"busy": 10**13})  # each at its cap of 1
    redis_client.lrem(queue.key, 1, f"testbench-{site_line(names[0])}--000")  # the first site's line drains
    taken = take_all(bench, ["default"])
    assert [job.id for job in taken] == [f"testbench-{site_line(names[69])}--069"]


def test_a_site_that_gets_jobs_later_joins_the_turns_without_jumping_the_line(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """Pushed by plain commands (enqueue) and by scripts (deduplicated enqueue) alike, a newcomer site takes
    turns with the site already served 10 times: neither all of its jobs at once, nor after the whole backlog."""
    use_bench(bench)
    enqueue(ALPHA, 20)
    assert len(take_all(bench, ["default"], limit=10)) == 10
    enqueue(BETA, 2)
    bench_jobs.enqueue("sample_app.tasks.echo", record_id="d", job_id="dedup", deduplicate=True, site=BETA)
    assert sites_in_order(take_all(bench, ["default"], limit=6)) == [BETA, ALPHA] * 3


def test_a_bad_id_in_a_started_registry_is_set_aside_and_workers_and_listings_go_on(
    bench: Bench, redis_client: redis.Redis
) -> None:
    """The same poison id as a started-registry member made every worker exit 1 at start-up."""
    from test_dashboard import client_of

    use_bench(bench)
    redis_client.hset("rq:job:x.y", mapping={"status": "started", "worker_name": "ghost"})
    redis_client.zadd("rq:wip:testbench:default", {"x.y:exec1": time.time() + 1000})
    good = enqueue(ALPHA, 1)
    assert run_cli("--site", ALPHA, "show-pending-jobs", bench=bench).returncode == 0
    assert client_of(bench).get(f"/sites/{ALPHA}").status_code == 200
    result = run_cli("worker", "--burst", "--queue", "default", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Job.fetch(good[0], connection=redis_client, serializer=JSONSerializer).get_status() == "finished"
    assert redis_client.zcard("rq:wip:testbench:default") == 0
    assert b"cannot read it" in (redis_client.hget(KEYS.set_aside, "x.y:exec1") or b"")


def test_a_site_that_keeps_one_job_queued_does_not_take_every_turn(bench: Bench, redis_client: redis.Redis) -> None:
    """A site whose line empties at each take and fills again (a job that queues its follow-up) came back with
    the pass it had, ahead of a site with a backlog, and took every turn."""
    use_bench(bench)
    enqueue(BETA, 10)
    taken = []
    for _ in range(6):
        enqueue(ALPHA, 1)
        taken += sites_in_order(take_all(bench, ["default"], limit=1))
    assert taken.count(BETA) >= 2 and taken.count(ALPHA) <= 4, taken


def test_ids_rq_made_go_to_the_foreign_line_not_to_a_site(bench: Bench, redis_client: redis.Redis) -> None:
    """RQ's own ids are uuid4s (8-4-4-4-12): their second group is no site."""
    from bench_jobs.jobs.fair import FOREIGN_LINE, line_of

    use_bench(bench)
    rq_id = "cafe0000-cafe-4abc-8def-0123456789ab"
    assert line_of("testbench", rq_id) == FOREIGN_LINE
    assert line_of("testbench", enqueue(ALPHA, 1)[0]) == site_line(ALPHA)
    redis_client.rpush("rq:queue:testbench:default", rq_id)  # as plain RQ pushes it: indexed by the next reindex
    settings = load_bench_settings(bench)
    assert reindex(redis_client, worker_queue(connect(settings), settings, "default")) == 2
    assert sorted(redis_client.zrange(KEYS.fair("default"), 0, -1)) == sorted(
        [FOREIGN_LINE.encode(), site_line(ALPHA).encode()]
    )


def test_a_take_whose_answer_is_lost_gives_its_job_back_at_the_next_take(
    bench: Bench, redis_client: redis.Redis, monkeypatch: Any
) -> None:
    """The take script ran (the id moved to the intermediate list under this worker's name) but its reply never
    came: a live taker's ids are given back by nobody else, so the next take of the same worker returns them."""
    from bench_jobs.worker import take as take_module

    use_bench(bench)
    [job_id] = enqueue(ALPHA, 1)
    real_lua = take_module.lua
    lost = []

    def lua_losing_the_first_take_reply(conn: redis.Redis, source: str) -> Any:
        script = real_lua(conn, source)
        if source != take_module.TAKE_LUA:
            return script

        def run(**kwargs: Any) -> Any:
            result = script(**kwargs)
            if not lost:
                lost.append(result)
                raise redis.ConnectionError("Connection reset by peer (while reading the reply)")
            return result

        return run

    monkeypatch.setattr(take_module, "lua", lua_losing_the_first_take_reply)
    try:
        take_all(bench, ["default"])
    except redis.ConnectionError:
        pass
    else:
        raise AssertionError("the first take should have lost its reply")
    assert redis_client.lrange("rq:queue:testbench:default:intermediate", 0, -1) == [job_id.encode()]
    assert redis_client.hget(KEYS.taken, job_id) == b"test-taker"
    assert [job.id for job in take_all(bench, ["default"], limit=1)] == [job_id]


def test_a_take_that_lands_a_moment_after_its_lost_reply_was_looked_at_is_given_back_too(
    bench: Bench, redis_client: redis.Redis, monkeypatch: Any
) -> None:
    """A take whose reply timed out can still be in a socket buffer when Redis answers the worker's first look:
    the worker keeps giving back its own stray ids for UNSURE_FOR_S, so one that lands late is not stuck under a
    live taker (recovery gives back only a dead taker's)."""
    from bench_jobs.worker import take as take_module

    use_bench(bench)
    real_lua = take_module.lua
    state: dict[str, Any] = {"lost": False}

    def lua_whose_first_take_lands_late(conn: redis.Redis, source: str) -> Any:
        script = real_lua(conn, source)
        if source != take_module.TAKE_LUA:
            return script

        def run(**kwargs: Any) -> Any:
            if not state["lost"]:
                state["lost"] = True
                state["late"] = lambda: script(**kwargs)  # the same take, run by Redis later
                raise redis.TimeoutError("Timeout reading from socket")
            return script(**kwargs)

        return run

    monkeypatch.setattr(take_module, "lua", lua_whose_first_take_lands_late)
    with pytest.raises(redis.TimeoutError):
        take_all(bench, ["default"])
    assert take_all(bench, ["default"]) == []  # the first look: nothing has landed yet
    [job_id] = enqueue(ALPHA, 1)
    token = taker.set("test-taker")
    try:
        state["late"]()  # now the stale take lands: the job moves to the intermediate list under this worker
    finally:
        taker.reset(token)
    assert redis_client.hget(KEYS.taken, job_id) == b"test-taker"
    assert [job.id for job in take_all(bench, ["default"], limit=1)] == [job_id]
