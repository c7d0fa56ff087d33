"""The dashboard: a Starlette app of server-rendered pages (Overview, Sites, a site's jobs, every site's jobs, a
job, Schedule)
and, unless read-only, POST actions that each carry a CSRF token. Pages call the read models of the rooms
below; errors become 400/404/503 pages, never a traceback."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import redis
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..core.bench import Bench, validate_site_name
from ..core.config import BenchSettings, load_bench_settings, load_site_settings, redact_url
from ..core.config_writer import update_config_file
from ..core.connection import connect_checked
from ..core.context import use_bench
from ..core.hooks import KNOWN_EVENTS
from ..core.keys import Keys
from ..errors import BenchJobsError, ConfigError, RedisUnavailable
from ..jobs import history
from ..jobs.finished import DETAIL_RESULT_CHARS, return_values
from ..jobs.listings import check_job_of, job_detail, queue_stats
from ..jobs.purge import failed_job_ids, plan_purge, purge, requeue_failed
from ..jobs.throughput import DEFAULT_SPAN, SPANS, read_throughput
from ..ops.doctor import run_doctor
from ..scheduler.clock import read_clock
from ..scheduler.view import read_schedule, trigger
from . import reads
from .actions import delete_job
from .chart import bar_chart, sparkline
from .guard import BodyLimit, Gate, guard
from .render import HTTPProblem, url_form
from .render import templates as render_env
from .security import CSRF_FIELD, same_secret

REFRESH_S = 5  # how often pages poll for fresh content
SHOWN_KWARGS_CHARS = 64 * 1024  # of a job's arguments its page shows (and reloads) unless asked for the whole
SITES_PAGE_SIZE = 100
HISTORY_SHOWN = 100
OVERVIEW_DOCTOR_SITES = 50  # up to this many sites the overview runs doctor's per-site checks for each
FLASH_COOKIE = "bj_flash"
_JOB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,300}")
_PAGE = re.compile(r"[0-9]{1,7}")  # ASCII digits only: int() also reads '²'-like digits, and 5,000 of them fails


@dataclass(frozen=True)
class Dashboard:
    bench: Bench
    read_only: bool = False
    token: str | None = None


def create_app(dashboard: Dashboard) -> Starlette:
    """The ASGI app for one bench (whose apps it makes importable, for the schedule's hooks and triggers)."""
    templates = render_env()
    bench = dashboard.bench
    use_bench(bench)
    gate = Gate(dashboard.token, secrets.token_bytes(32))

    def render(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        flash = gate.unseal(request.cookies.get(FLASH_COOKIE, ""))
        defaults = {"refresh_s": REFRESH_S, "flash": flash}
        body = templates.get_template(name).render(
            bench_id=_shown_bench_id(request),
            read_only=dashboard.read_only,
            csrf=request.state.csrf,
            csrf_field=CSRF_FIELD,
            path=request.url.path,
            **{**defaults, **context},
        )
        response = HTMLResponse(body, code)
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE)
        return response

    def _shown_bench_id(request: Request) -> str | None:
        """The bench's id for the header: only once signed in, and None when the config cannot be read (the
        page may be the error page saying so)."""
        if not getattr(request.state, "signed_in", False):
            return None
        try:
            return _settings().bench_id
        except BenchJobsError:
            return None

    def _settings() -> BenchSettings:
        return load_bench_settings(bench)

    def _conn() -> redis.Redis:
        return connect_checked(_settings())

    def _site(request: Request) -> str:
        name = str(request.path_params["site"])
        try:
            validate_site_name(name)
        except ConfigError:
            raise HTTPProblem(404, f"No site {name!r} in this bench.") from None
        if not bench.has_site(name):
            raise HTTPProblem(404, f"No site {name!r} in this bench.", "The Sites page lists them.")
        return name

    def _job_id(request: Request, site: str) -> str:
        job_id = str(request.path_params["job_id"])
        if not _JOB_ID.fullmatch(job_id):
            raise HTTPProblem(404, "No such job.")
        try:
            check_job_of(_settings().bench_id, [site], job_id)
        except ConfigError:
            raise HTTPProblem(404, f"No job {job_id!r} of site {site}.") from None
        return job_id

    def _param(request: Request, name: str, allowed: tuple[str, ...] | None = None, default: str = "") -> str:
        value = request.query_params.get(name, default).strip() or default
        if len(value) > 200 or (allowed is not None and value and value not in allowed):
            hint = f"Allowed: {', '.join(allowed)}." if allowed else None
            raise HTTPProblem(400, f"Bad value for {name!r}: {value[:200]!r}.", hint)
        return value

    def _page(request: Request, last: int = 100_000) -> int:
        text = request.query_params.get("page", "1")
        if not _PAGE.fullmatch(text) or not 1 <= int(text) <= last:
            raise HTTPProblem(400, f"Bad page number {text[:20]!r}.", f"Pages count from 1 to {last}.")
        return int(text)

    def overview(request: Request) -> Response:
        settings, conn = _settings(), _conn()
        now = read_clock(conn).now  # Redis's: the scheduler's heartbeats carry its time
        stats = queue_stats(conn, settings, now)
        names = [row.name for row in stats]
        worker_names = sorted({name for row in stats for name in row.workers})
        site_names = bench.site_names()
        per_site = len(site_names) <= OVERVIEW_DOCTOR_SITES
        report = run_doctor(bench, site_names if per_site else [], now, stats)
        span = _param(request, "span", tuple(SPANS), DEFAULT_SPAN)
        throughput = read_throughput(conn, settings.bench_id, names, now, span)
        return render(
            request,
            "overview.html",
            stats=stats,
            throughput=throughput,
            chart=bar_chart(throughput.bars, throughput.bar_s, "throughput"),
            sparks={name: sparkline(bars, throughput.bar_s) for name, bars in throughput.per_queue.items()},
            spans=SPANS,
            now=now,
            oldest=reads.oldest_queued(conn, settings, names),
            workers=reads.workers(conn, settings, worker_names, names),
            scheduler=reads.scheduler_state(conn, settings, now),
            checks=report.checks,
            redis_url=redact_url(settings.redis_url),
            site_count=len(site_names),
            per_site_checks=per_site,
        )

    def sites(request: Request) -> Response:
        match = _param(request, "q")
        page = _page(request)
        names = [name for name in bench.site_names() if match in name]
        start = (page - 1) * SITES_PAGE_SIZE
        shown = [load_site_settings(bench, name) for name in names[start : start + SITES_PAGE_SIZE]]
        return render(
            request,
            "sites.html",
            sites=shown,
            q=match,
            page=page,
            has_next=len(names) > start + SITES_PAGE_SIZE,
            total=len(names),
        )

    def listing(request: Request, site: str | None) -> dict[str, Any]:
        """The context of a page of jobs (of `site`, or of every site): its filters, its jobs, its chart."""
        settings, conn = _settings(), _conn()
        status = _param(request, "status", reads.STATUSES, "pending")
        queue = _param(request, "queue", tuple(settings.queues)) or None
        method = _param(request, "method") or None
        span = _param(request, "span", tuple(SPANS), DEFAULT_SPAN)
        page = _page(request, reads.FILTER_SCAN_LIMIT // reads.PAGE_SIZE)
        jobs = reads.site_jobs(conn, settings, site, status, queue, method, page)
        filters = {k: v for k, v in (("status", status), ("queue", queue), ("method", method)) if v}
        shown = [queue] if queue else list(settings.queues)
        throughput = read_throughput(conn, settings.bench_id, shown, read_clock(conn).now, span, site)
        return dict(
            jobs=jobs,
            status=status,
            queue=queue or "",
            method=method or "",
            statuses=reads.STATUSES,
            queues=list(settings.queues),
            filters=urlencode(filters),
            throughput=throughput,
            chart=bar_chart(throughput.bars, throughput.bar_s, "throughput"),
            spans=SPANS,
        )

    def site(request: Request) -> Response:
        name = _site(request)
        checks = [c for c in run_doctor(bench, [name]).checks if c.name.endswith(f":{name}") or "failed" in c.name]
        return render(
            request,
            "site.html",
            site=load_site_settings(bench, name),
            events=KNOWN_EVENTS,
            checks=checks,
            **listing(request, name),
        )

    def all_jobs(request: Request) -> Response:
        return render(request, "jobs.html", **listing(request, None))

    def job(request: Request) -> Response:
        name = _site(request)
        job_id = _job_id(request, name)
        try:
            detail = job_detail(_conn(), _settings(), job_id)
        except RedisUnavailable:
            raise
        except BenchJobsError as exc:
            raise HTTPProblem(404, exc.message, exc.hint) from None
        summary = detail.summary
        shown = json.dumps(detail.kwargs, indent=2, default=str, sort_keys=True)
        whole = request.query_params.get("whole") == "1"
        ran = summary.ended_at and summary.started_at
        duration = (summary.ended_at - summary.started_at).total_seconds() if ran else None  # type: ignore[operator]
        finished = summary.status == "finished"
        result = return_values(_conn(), [job_id], DETAIL_RESULT_CHARS).get(job_id) if finished else None
        return render(
            request,
            "job.html",
            site=name,
            detail=detail,
            job=summary,
            duration_s=duration,
            result=result,
            kwargs_json=shown if whole else shown[:SHOWN_KWARGS_CHARS],
            kwargs_cut=not whole and len(shown) > SHOWN_KWARGS_CHARS,
            refresh_s=0 if whole and len(shown) > SHOWN_KWARGS_CHARS else REFRESH_S,
        )

    def schedule(request: Request) -> Response:
        names = bench.site_names()
        chosen = request.query_params.get("site") or (names[0] if names else "")
        if chosen and chosen not in names:
            raise HTTPProblem(404, f"No site {chosen[:100]!r} in this bench.", "The Sites page lists them.")
        conn, now = _conn(), datetime.now(timezone.utc)
        rows = read_schedule(bench, [chosen], conn, now) if chosen else []
        entries = history.runs(history.read(conn, Keys(_settings().bench_id), chosen, HISTORY_SHOWN)) if chosen else []
        return render(request, "schedule.html", site=chosen, sites=names, rows=rows, history=entries)

    def done(target: str, message: str) -> Response:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(FLASH_COOKIE, gate.seal(message), max_age=60, httponly=True, samesite="strict")
        return response

    def action(work: Callable[[Request, dict[str, str]], Response]) -> Callable[[Request], Awaitable[Response]]:
        """An action's endpoint: its form, once its CSRF field is this session's token (403 otherwise; the
        guard has already refused a request from another origin), then `work` in a thread, since it calls
        Redis and writes files (blocking), so one slow action never stalls the other pages."""

        async def endpoint(request: Request) -> Response:
            form = await url_form(request)
            gate.check_form(request, form)
            return await run_in_threadpool(work, request, form)

        return endpoint

    def requeue_job(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        job_id = _job_id(request, name)
        settings, conn = _settings(), _conn()
        count = requeue_failed(conn, settings, failed_job_ids(conn, settings, [name], job_id=job_id))
        return done(f"/sites/{quote(name)}/jobs/{quote(job_id)}", f"Requeued {count} job.")

    def requeue_all(sites: list[str], form: dict[str, str], back: str) -> Response:
        """Every failed job of `sites` (of the form's queue only, when it names one) back on its queue, as
        `requeue-failed-jobs` does."""
        settings, conn = _settings(), _conn()
        queue = form.get("queue") or None
        if queue is not None and queue not in settings.queues:
            raise HTTPProblem(400, f"Unknown queue {queue[:100]!r}.", f"Queues: {', '.join(settings.queues)}.")
        count = requeue_failed(conn, settings, failed_job_ids(conn, settings, sites, [queue] if queue else None))
        return done(back, f"Requeued {count} failed job(s){f' of queue {queue}' if queue else ''}.")

    def requeue_site(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        return requeue_all([name], form, f"/sites/{quote(name)}?status=failed")

    def requeue_every_site(request: Request, form: dict[str, str]) -> Response:
        return requeue_all(bench.site_names(), form, "/jobs?status=failed")

    def delete(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        job_id = _job_id(request, name)
        count = delete_job(_conn(), _settings(), name, job_id)
        return done(f"/sites/{quote(name)}", f"Deleted {count} job ({job_id}).")

    def purge_jobs(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        settings, conn = _settings(), _conn()
        failed = form.get("which") == "failed"
        queue = form.get("queue") or None
        if queue is not None and queue not in settings.queues:
            raise HTTPProblem(400, f"Unknown queue {queue[:100]!r}.", f"Queues: {', '.join(settings.queues)}.")
        count = purge(conn, plan_purge(conn, settings, [name], [queue] if queue else None, failed=failed))
        kind = "failed" if failed else "pending"
        return done(f"/sites/{quote(name)}", f"Purged {count} {kind} jobs{f' of queue {queue}' if queue else ''}.")

    def set_scheduler(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        if form.get("enabled") not in ("0", "1"):
            raise HTTPProblem(400, "Bad value for 'enabled'.", "Allowed: 0, 1.")
        enabled = form["enabled"] == "1"
        (change,) = update_config_file(bench.site_config_path(name), {"scheduler_enabled": enabled})
        word = "enabled" if enabled else "disabled"
        return done(f"/sites/{quote(name)}", f"Scheduler {word}" if change.changed else f"Scheduler already {word}.")

    def trigger_event(request: Request, form: dict[str, str]) -> Response:
        name = _site(request)
        event = form.get("event", "")
        if event not in KNOWN_EVENTS:
            raise HTTPProblem(400, f"Unknown event {event[:100]!r}.", f"Events: {', '.join(KNOWN_EVENTS)}.")
        triggered, left_out = trigger(bench, [name], event, _conn())
        note = f"; left out: {'; '.join(left_out)}" if left_out else ""
        return done(f"/sites/{quote(name)}", f"Triggered {event}: {len(triggered)} job(s) queued{note}.")

    async def login(request: Request) -> Response:
        form = await url_form(request)
        if dashboard.token and same_secret(form.get("token"), dashboard.token):
            response = RedirectResponse("/", status_code=303)  # always "/": no redirect target to forge
            gate.sign_in(response)
            return response
        request.state.signed_in = False
        return render(request, "login.html", code=401, failed=True)

    async def read_only(request: Request) -> Response:
        raise HTTPException(405)

    def metrics(request: Request) -> Response:
        """The Prometheus text of web.metrics (its errors become the middleware's 503 and 400 pages)."""
        from .metrics import content_type, render_metrics

        return Response(render_metrics(bench), media_type=content_type())

    routes = [
        Route("/", overview),
        Route("/sites", sites),
        Route("/sites/{site}", site),
        Route("/sites/{site}/jobs/{job_id}", job),
        Route("/jobs", all_jobs),
        Route("/schedule", schedule),
        Route("/metrics", metrics),
        Route("/login", login, methods=["POST"]),
    ]
    actions: dict[str, Callable[[Request, dict[str, str]], Response]] = {
        "/sites/{site}/jobs/{job_id}/requeue": requeue_job,
        "/sites/{site}/jobs/{job_id}/delete": delete,
        "/sites/{site}/requeue": requeue_site,
        "/requeue": requeue_every_site,
        "/sites/{site}/purge": purge_jobs,
        "/sites/{site}/scheduler": set_scheduler,
        "/sites/{site}/trigger": trigger_event,
    }
    # Read-only: the actions' paths stay routes that refuse every method, so a POST is a 405 page (as the
    # README says), not a 404 that would read as a wrong URL.
    for path, work in actions.items():
        routes.append(Route(path, read_only if dashboard.read_only else action(work), methods=["POST"]))

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own 404 (no such route) and 405 (an action where there is none) as pages."""
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        message = {404: "No such page.", 405: "No such action here."}.get(code, "Request refused.")
        hint = "This dashboard is read-only." if code == 405 and dashboard.read_only else None
        return render(request, "error.html", code, message=message, hint=hint)

    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit), Middleware(BaseHTTPMiddleware, dispatch=guard(gate, render))],
        exception_handlers={HTTPException: http_error},
    )
