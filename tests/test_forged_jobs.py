"""Jobs written straight into Redis by someone other than bench-jobs (DESIGN 4): nothing they name is imported or
run, each ends failed with its reason, and the worker goes on. Also enqueue and trigger-scheduler-event refusing
what a worker would refuse: a name an app merely imported (`from os import system`) included."""

from __future__ import annotations

import json
import os
import pickle
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Webhook
from rq.serializers import JSONSerializer
from support import run_cli, write

import bench_jobs
from bench_jobs.core.allowlist import foreign_reason
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.core.keys import JOB_FUNCTION, new_job_id
from bench_jobs.errors import JobError
from bench_jobs.jobs.queues import BenchQueue, rq_queue
from bench_jobs.jobs.rq_job import BenchJob

QUEUE = "testbench:default"
QUEUE_KEY = f"rq:queue:{QUEUE}"

# A module on the worker's path (the bench's apps/ folder) that is no site's app: importing it or calling
# its function leaves a marker file, so a test can tell that a name in a job hash was never even imported.
MARKER_LIB = """\
from pathlib import Path

MARKERS = Path(__file__).resolve().parents[2] / "logs" / "markers"
MARKERS.mkdir(parents=True, exist_ok=True)
(MARKERS / "imported").touch()


def write_marker(*args, **kwargs):
    (MARKERS / "called").touch()
"""


class _TouchOnUnpickle:
    """Unpickling this runs `touch <path>`: what a pickle payload can do to a worker that unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def alpha(bench: Bench) -> Iterator[Bench]:
    """The bench in use, with the marker module in its apps/ folder (no site lists it)."""
    write(bench.apps_dir / "marker_lib" / "__init__.py", MARKER_LIB)
    use_bench(bench)
    with bench_jobs.site_context("alpha.test"):
        yield bench


def markers(bench: Bench) -> list[str]:
    folder = bench.logs_dir / "markers"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def forge(client: redis.Redis, data: bytes, status: str = "queued", push: bool = True, **fields: Any) -> str:
    """Write a job hash as anyone with access to Redis could (RQ's field names), queue it; return its id."""
    job_id = new_job_id("testbench", "alpha.test")
    now = "2026-01-01T00:00:00.000000Z"
    base = {"data": data, "origin": QUEUE, "status": status, "created_at": now, "enqueued_at": now, "timeout": 60}
    client.hset(f"rq:job:{job_id}", mapping={**base, **fields})
    if push:
        client.rpush(QUEUE_KEY, job_id)
        client.sadd("rq:queues", QUEUE_KEY)
    return job_id


def json_call(func: str, **kwargs: Any) -> bytes:
    """A JSON payload in RQ's format: (function name, instance, args, kwargs)."""
    return bytes(JSONSerializer.dumps((func, None, [], kwargs)))


def bench_call(method: str, **kwargs: Any) -> bytes:
    """A payload shaped like bench-jobs' own: its entry point, naming `method` for site alpha.test."""
    return json_call(JOB_FUNCTION, site="alpha.test", method=method, kwargs=kwargs, job_name=None, event=None)


def status(client: redis.Redis, job_id: str) -> str:
    return (client.hget(f"rq:job:{job_id}", "status") or b"").decode()


def calls(bench: Bench) -> list[dict[str, Any]]:
    path = bench.logs_dir / "alpha.test" / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def webhook_catcher() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 recording every request it gets: (its URL, the request paths)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", seen
    finally:
        server.shutdown()
        server.server_close()


def webhooks(url: str, *statuses: str) -> str:
    return json.dumps([Webhook(url, status).to_dict() for status in statuses])  # type: ignore[arg-type]


@pytest.mark.slow
def test_forged_payloads_run_nothing_fail_with_their_reason_and_the_worker_goes_on(
    alpha: Bench, redis_client: redis.Redis, webhook_catcher: tuple[str, list[str]]
) -> None:
    url, requests = webhook_catcher
    touched = alpha.logs_dir / "touched"
    command = f"touch {touched}"
    forged = {
        "pickle": forge(redis_client, pickle.dumps((_TouchOnUnpickle(touched), None, [], {}))),
        "os.system": forge(
            redis_client,
            json_call("os.system", command=command),
            failure_callback_name="marker_lib.write_marker",
            webhooks=webhooks(url, "failed", "finished"),
        ),
        "re-exported built-in": forge(
            redis_client,
            bench_call("sample_app.reexports.system", command=command),
            failure_callback_name="builtins.print",
        ),
        "re-exported class": forge(
            redis_client, bench_call("sample_app.reexports.Popen", args=["touch", str(touched)])
        ),
        "re-exported partial": forge(redis_client, bench_call("sample_app.reexports.say_hello")),
        "another app's function": forge(redis_client, bench_call("sample_app.reexports.only_for_beta")),
    }
    after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after the forged ones")
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert not touched.exists()
    assert markers(alpha) == [], "a callback named in the hash was imported or called"
    assert requests == [], "a webhook named in the hash was sent"
    assert "<BenchJob" not in output and "Redis<" not in output, "builtins.print ran as a failure callback"
    assert {name: status(redis_client, job_id) for name, job_id in forged.items()} == dict.fromkeys(forged, "failed")
    assert after.get_status(refresh=True) == "finished"
    assert [c["record_id"] for c in calls(alpha) if c["event"] == "echo"] == ["after the forged ones"]

    shown = run_cli("--site", "alpha.test", "show-failed-jobs", "--json", bench=alpha)
    assert shown.returncode == 0, shown.stderr
    errors = {job["id"]: job["error"] for job in json.loads(shown.stdout)["jobs"]}
    expected = {
        "pickle": "is no bench-jobs job and is not run: its payload is not JSON (UnicodeDecodeError",
        "os.system": "Refused to run 'os.system': bench-jobs workers run only",
        "re-exported built-in": "it is posix.system, defined outside the apps of site alpha.test (sample_app)",
        "re-exported class": "it is subprocess.Popen, defined outside the apps of site alpha.test",
        "re-exported partial": "it is functools.partial, defined outside the apps of site alpha.test",
        "another app's function": "it is other_app.tasks.only_for_beta, defined outside the apps of site alpha.test",
    }
    for name, needle in expected.items():
        assert needle in (errors.get(forged[name]) or ""), (name, errors.get(forged[name]))


@pytest.mark.slow
def test_callbacks_and_webhooks_in_the_hash_of_a_job_that_runs_are_ignored(
    alpha: Bench, redis_client: redis.Redis, webhook_catcher: tuple[str, list[str]]
) -> None:
    url, requests = webhook_catcher
    marked = forge(
        redis_client,
        bench_call("sample_app.tasks.echo", record_id="marked"),
        success_callback_name="marker_lib.write_marker",
        webhooks=webhooks(url, "finished"),
    )
    printed = forge(
        redis_client, bench_call("sample_app.tasks.echo", record_id="printed"), success_callback_name="builtins.print"
    )
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha)
    assert result.returncode == 0, result.stdout + result.stderr
    assert status(redis_client, marked) == status(redis_client, printed) == "finished"
    assert markers(alpha) == [] and requests == []
    assert "<BenchJob" not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_dependents_set_never_enqueues_a_forged_job(alpha: Bench, redis_client: redis.Redis) -> None:
    finishes = bench_jobs.enqueue("sample_app.tasks.echo", record_id="finishes")
    fails = bench_jobs.enqueue("sample_app.tasks.fail", message="fails")
    forged = []
    for parent in (finishes, fails):
        job_id = forge(
            redis_client,
            bench_call("sample_app.tasks.echo", record_id=f"forged dependent of {parent.id}"),
            status="deferred",
            push=False,
            dependency_ids=json.dumps([parent.id]),
            allow_dependency_failures=1,
        )
        redis_client.zadd(f"rq:deferred:{QUEUE}", {job_id: 0})
        redis_client.sadd(f"rq:job:{parent.id}:dependents", job_id)
        forged.append(job_id)
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (finishes.get_status(refresh=True), fails.get_status(refresh=True)) == ("finished", "failed")
    assert [c["record_id"] for c in calls(alpha) if c["event"] == "echo"] == ["finishes"]
    assert [status(redis_client, job_id) for job_id in forged] == ["deferred", "deferred"]
    assert redis_client.llen(QUEUE_KEY) == 0


def test_a_bench_job_ignores_every_field_that_names_something_to_import_call_or_enqueue(
    redis_client: redis.Redis,
) -> None:
    job_id = forge(
        redis_client,
        bench_call("sample_app.tasks.echo", record_id="x"),
        push=False,
        success_callback_name="builtins.print",
        success_callback_timeout=9999,
        failure_callback_name="builtins.print",
        stopped_callback_name="builtins.print",
        webhooks=webhooks("http://127.0.0.1:1/hook", "finished", "failed"),
        dependency_ids=json.dumps(["other"]),
        allow_dependency_failures=1,
        repeats_left=5,
        repeat_intervals=json.dumps([0]),
        rate_limit_key="someone-elses-key",
        rate_limit_concurrency=1,
        group_id="someone-elses-group",
    )
    job = BenchJob.fetch(job_id, connection=redis_client, serializer=JSONSerializer)
    assert (job.success_callback, job.failure_callback, job.stopped_callback) == (None, None, None)
    assert job.success_callback_timeout == job.failure_callback_timeout == 60, "RQ's default, not the hash's"
    assert (job.webhooks, job.dependency_ids, job.allow_dependency_failures) == ([], [], None)
    assert (job.repeats_left, job.repeat_intervals, job.has_rate_limit, job.group_id) == (None, None, False, None)


def test_bench_queues_default_to_json_and_bench_jobs_and_have_no_dependents(
    bench: Bench, redis_client: redis.Redis
) -> None:
    plain = BenchQueue(QUEUE, connection=redis_client)
    assert plain.job_class is BenchJob and plain.serializer is JSONSerializer
    use_bench(bench)
    settings = bench_jobs.core.context.load_site_settings(bench, "alpha.test").bench
    queue = rq_queue(redis_client, settings, "default")
    assert isinstance(queue, BenchQueue) and queue.job_class is BenchJob and queue.serializer is JSONSerializer
    job = bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", site="alpha.test")
    dependent = forge(redis_client, bench_call("sample_app.tasks.echo", record_id="y"), status="deferred", push=False)
    redis_client.sadd(f"rq:job:{job.id}:dependents", dependent)
    assert queue.enqueue_dependents(job) == {}
    assert status(redis_client, dependent) == "deferred" and redis_client.llen(QUEUE_KEY) == 1


def _defined_in(module: str) -> Any:
    def function() -> None:
        pass

    function.__module__ = module
    return function


def test_the_shared_check_judges_where_a_callable_is_defined(alpha: Bench) -> None:
    from sample_app import tasks  # type: ignore[import-not-found]

    apps = ("sample_app",)
    allowed = [
        tasks.echo,
        tasks.Invoice,
        tasks.Invoice("x").submit,
        _defined_in("sample_app"),
        _defined_in("sample_app.a.b"),
    ]
    assert [foreign_reason(target, apps, "alpha.test") for target in allowed] == [None] * len(allowed)
    refused = {
        "os.system": (os.system, "it is posix.system, defined outside"),
        "print": (print, "it is builtins.print, defined outside"),
        "a built-in bound method": ("".join, "it is the built-in str.join, defined outside"),
        "a partial of an app function": (partial(tasks.echo, "x"), "it is functools.partial, defined outside"),
        "a look-alike module": (_defined_in("sample_apps.tasks"), "it is sample_apps.tasks."),
        "a class from elsewhere": (threading.Thread, "it is threading.Thread, defined outside"),
    }
    for name, (target, needle) in refused.items():
        assert needle in (foreign_reason(target, apps, "alpha.test") or ""), name


@pytest.mark.parametrize(
    ("method", "needle"),
    [
        ("sample_app.reexports.system", "it is posix.system, defined outside the apps of site alpha.test"),
        ("sample_app.reexports.Popen", "it is subprocess.Popen, defined outside"),
        ("sample_app.reexports.say_hello", "it is functools.partial, defined outside"),
        ("sample_app.reexports.only_for_beta", "it is other_app.tasks.only_for_beta, defined outside"),
        ("os.system", "it is not inside the apps of site alpha.test (sample_app)"),
    ],
)
def test_enqueue_refuses_what_an_app_merely_imported(
    alpha: Bench, redis_client: redis.Redis, method: str, needle: str
) -> None:
    with pytest.raises(JobError) as caught:
        bench_jobs.enqueue(method, command="true")
    assert caught.value.message.startswith(f"Cannot enqueue {method!r}: ") and needle in caught.value.message
    assert "defined in the site's apps" in (caught.value.hint or "")
    assert redis_client.llen(QUEUE_KEY) == 0


def test_enqueue_allows_the_apps_own_functions_and_classes_for_the_sites_that_have_the_app(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    assert bench_jobs.enqueue("sample_app.tasks.echo", record_id="x") is not None
    assert bench_jobs.enqueue("sample_app.tasks.Invoice", name="INV-1") is not None
    assert bench_jobs.enqueue("sample_app.reexports.only_for_beta", site="beta.test") is not None
    assert redis_client.llen(QUEUE_KEY) == 3


def test_enqueue_doc_refuses_a_private_method_and_the_worker_an_inherited_built_in(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    hooks = alpha.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(hooks.read_text() + '\ndoc_types["Ledger"] = "sample_app.ledger.Ledger"\n')
    write(
        alpha.apps_dir / "sample_app" / "ledger.py",
        "class Ledger(dict):\n    def __new__(cls, name):\n        return super().__new__(cls)\n\n"
        "    def __init__(self, name):\n        pass\n",
    )
    with pytest.raises(JobError, match="'__reduce__' is not a public method name"):
        bench_jobs.enqueue_doc("Invoice", "INV-1", "__reduce__")
    with pytest.raises(JobError, match=r"Ledger\('L-1'\)\.clear: it is the built-in Ledger\.clear, defined outside"):
        bench_jobs.enqueue_doc("Ledger", "L-1", "clear", now=True)
    assert bench_jobs.enqueue_doc("Invoice", "INV-1", "submit", now=True) == "submitted INV-1"


def test_the_worker_refuses_a_doc_job_whose_loader_is_no_doc_type(alpha: Bench) -> None:
    from bench_jobs.jobs.runtime import run_job

    doc = {"doctype": "Invoice", "name": "x", "method": "submit"}
    with pytest.raises(JobError, match=r"'sample_app\.tasks\.echo': it is not a doc_types loader of site alpha\.test"):
        run_job("alpha.test", "sample_app.tasks.echo", doc=doc)


def test_a_job_hook_outside_the_sites_apps_refuses_the_job(alpha: Bench) -> None:
    hooks = alpha.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(
        hooks.read_text() + '\nbefore_job = ["sample_app.tasks.before", "sample_app.reexports.say_hello"]\n'
    )
    with pytest.raises(JobError, match=r"before_job hook 'sample_app\.reexports\.say_hello': it is functools\.partial"):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id="x", now=True)
    assert calls(alpha) == [], "neither the hooks nor the job ran"


@pytest.mark.slow
def test_trigger_scheduler_event_refuses_what_a_worker_would_refuse(bench: Bench, redis_client: redis.Redis) -> None:
    hooks = bench.apps_dir / "sample_app" / "hooks.py"
    hooks.write_text(
        hooks.read_text().replace(
            '"weekly": ["sample_app.tasks.weekly"]',
            '"weekly": ["sample_app.tasks.weekly", "os.system", "sample_app.reexports.system", '
            '"other_app.tasks.only_for_beta"]',
        )
    )
    for method, needle in [
        ("os.system", "refused 'os.system': it is not inside the apps of site alpha.test (sample_app)"),
        ("sample_app.reexports.system", "it is posix.system, defined outside the apps of site alpha.test"),
        ("other_app.tasks.only_for_beta", "it is not inside the apps of site alpha.test"),
    ]:
        result = run_cli("--site", "alpha.test", "trigger-scheduler-event", method, bench=bench)
        assert result.returncode == 1, (method, result.stdout, result.stderr)
        assert result.stderr.startswith(f"Error: Nothing queued for {method}: alpha.test: sample_app.hooks weekly: ")
        assert needle in result.stderr and "Hint: " in result.stderr and "Traceback" not in result.stderr
    weekly = run_cli("--site", "alpha.test", "trigger-scheduler-event", "weekly", "--json", bench=bench)
    assert weekly.returncode == 0, weekly.stderr
    assert [job["method"] for job in json.loads(weekly.stdout)["jobs"]] == ["sample_app.tasks.weekly"]
    assert weekly.stderr.count("Warning: not queued: alpha.test: sample_app.hooks weekly: refused") == 3
    assert redis_client.llen(QUEUE_KEY) == 1


@pytest.mark.slow
def test_a_job_hash_that_cannot_be_read_fails_with_its_reason_and_the_worker_goes_on(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    """RQ parses a job's dates and numbers as soon as it fetches it: a hash with a malformed one made every
    worker that took it quit, and a worker's start gave it back to the front of the queue, so no job ran again."""
    unreadable = forge(redis_client, bench_call("sample_app.tasks.echo", record_id="never"), enqueued_at="garbage")
    after = bench_jobs.enqueue("sample_app.tasks.echo", record_id="after the unreadable one")
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha)
    assert result.returncode == 0, result.stdout + result.stderr
    assert after.get_status(refresh=True) == "finished"
    assert status(redis_client, unreadable) == "failed"
    assert redis_client.llen(f"{QUEUE_KEY}:intermediate") == 0 and redis_client.hlen("bench_jobs:testbench:taken") == 0
    shown = run_cli("--site", "alpha.test", "show-failed-jobs", "--json", bench=alpha)
    errors = {job["id"]: job["error"] for job in json.loads(shown.stdout)["jobs"]}
    assert "cannot be read" in (errors.get(unreadable) or ""), errors


def test_the_shared_check_judges_the_code_a_call_runs_not_where_its_name_is(alpha: Bench) -> None:
    from sample_app import inherited  # type: ignore[import-not-found]

    apps = ("sample_app",)
    allowed = [inherited.OwnHandler, inherited.Loader, inherited.runner]
    assert [foreign_reason(target, apps, "alpha.test") for target in allowed] == [None] * len(allowed)
    refused = {
        "an inherited constructor": (
            inherited.AppLogHandler,
            "it is sample_app.inherited.AppLogHandler, whose __init__ is logging.FileHandler.__init__, defined outside",
        ),
        "a foreign metaclass": (inherited.Color, "whose metaclass's __call__ is enum.EnumType.__call__"),
        "an inherited __call__": (
            inherited.bound_system,
            "it is a sample_app.inherited.Bound object, whose __call__ is functools.partial.__call__, defined outside",
        ),
        "a staticmethod object": (inherited.static_system, "it is builtins.staticmethod, defined outside"),
    }
    for name, (target, needle) in refused.items():
        assert needle in (foreign_reason(target, apps, "alpha.test") or ""), name


def test_a_job_naming_an_app_class_with_an_inherited_constructor_truncates_nothing(
    alpha: Bench, redis_client: redis.Redis
) -> None:
    victim = alpha.root / "precious.txt"
    victim.write_text("keep me\n")
    with pytest.raises(JobError, match=r"whose __init__ is logging\.FileHandler\.__init__"):
        bench_jobs.enqueue("sample_app.inherited.AppLogHandler", filename=str(victim), mode="w")
    forged = forge(redis_client, bench_call("sample_app.inherited.AppLogHandler", filename=str(victim), mode="w"))
    result = run_cli("worker", "--burst", "--queue", "default", bench=alpha)
    assert result.returncode == 0, result.stdout + result.stderr
    assert victim.read_text() == "keep me\n"
    assert status(redis_client, forged) == "failed"


def test_a_job_refused_before_it_runs_gets_a_failed_line_in_the_sites_job_log(alpha: Bench) -> None:
    from bench_jobs.jobs.runtime import job_log_path, run_job

    with pytest.raises(JobError, match=r"Refused to run 'os\.getcwd'"):
        run_job("alpha.test", "os.getcwd", job_name="sneaky")
    lines = [json.loads(line) for line in job_log_path(alpha, "alpha.test").read_text().splitlines()]
    (line,) = [record for record in lines if record["method"] == "os.getcwd"]
    assert line["status"] == "failed" and line["job_name"] == "sneaky"
    assert line["error"].startswith("Refused to run 'os.getcwd'")
