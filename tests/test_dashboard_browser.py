"""The dashboard in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): a real
`bench-jobs dashboard` process, real workers, the real site config file. Screenshots on failure."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import kill_tree, run_cli, start_cli, wait_for

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.config import read_toml
from bench_jobs.core.config_writer import update_config_file
from bench_jobs.core.context import use_bench
from bench_jobs.web.chart import FAILED_FILL, FINISHED_FILL

CHROMIUM = Path("/usr/bin/chromium")
# A developer without Chromium skips these; CI (CI=true, where .ci/run installs it) never does: a missing
# browser or Playwright fails there instead of passing silently.
IN_CI = bool(os.environ.get("CI"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not IN_CI, reason="no /usr/bin/chromium: apt-get install -y chromium"
    ),
]
if IN_CI:
    import playwright.sync_api as sync_api
    import starlette  # noqa: F401
else:
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("starlette")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def dashboard_url(bench: Bench) -> Iterator[str]:
    port = free_port()
    process = start_cli(bench, "dashboard", "--port", str(port))
    try:
        wait_for(lambda: answers(port) or process.poll() is not None, 30, "the dashboard to listen")
        assert process.poll() is None, process.communicate()[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        kill_tree(process)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A Chromium page; on a failing test its screenshot is saved and the path is named in the failure."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            new_page = browser.new_page(viewport={"width": 1280, "height": 900})
            new_page.set_default_timeout(10_000)
            yield new_page
        finally:
            browser.close()


def screenshot_on_failure(page: Any, tmp_path: Path, step: Callable[[], None]) -> None:
    try:
        step()
    except BaseException as exc:
        shot = tmp_path / "dashboard-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{exc}\nscreenshot of the page: {shot}") from exc


def test_failed_job_seen_requeued_and_finished_and_scheduler_disabled_from_the_browser(
    bench: Bench,
    dashboard_url: str,
    page: Any,
    tmp_path: Path,
    workers: Callable[..., subprocess.Popen[str]],
) -> None:
    expect = sync_api.expect
    use_bench(bench)
    marker = tmp_path / "marker"
    for i in range(3):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"r{i}", site="alpha.test")
    failing = bench_jobs.enqueue("sample_app.tasks.fail_unless_file", path=str(marker), site="alpha.test").id
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    def steps() -> None:
        page.goto(dashboard_url + "/")
        default = page.locator('#queues tr[data-queue="default"]')
        expect(default.locator("a.finished")).to_have_text("3")
        expect(default.locator("a.failed")).to_have_text("1")
        expect(default.locator("a.queued")).to_have_text("0")

        page.get_by_role("link", name="Sites").click()
        page.get_by_role("link", name="alpha.test", exact=True).click()
        page.locator('#filters select[name="status"]').select_option("failed")
        page.locator("#filters button").click()
        page.get_by_role("link", name=failing).click()
        expect(page.locator("#traceback")).to_contain_text("FileNotFoundError: no marker file")
        expect(page.locator("#status")).to_have_text("failed")

        marker.write_text("now it works")
        page.locator("#requeue").click()
        expect(page.locator("#flash")).to_have_text("Requeued 1 job.")
        expect(page.locator("#status")).to_have_text("queued")
        workers("--burst")
        # The page polls itself: the job's status changes without a reload.
        expect(page.locator("#status")).to_have_text("finished", timeout=30_000)

        page.get_by_role("link", name="← site alpha.test").click()
        expect(page.locator("#scheduler-state")).to_contain_text("enabled")
        page.locator("#toggle-scheduler").click()
        expect(page.locator("#flash")).to_have_text("Scheduler disabled")
        expect(page.locator("#scheduler-state")).to_contain_text("disabled")

    screenshot_on_failure(page, tmp_path, steps)
    config = bench.site_config_path("alpha.test")
    assert read_toml(config)["scheduler_enabled"] is False
    assert re.search(r"^scheduler_enabled = false$", config.read_text(), re.M)
    assert "# alpha: a comment the user wrote" in config.read_text()


def test_chart_a_count_to_its_list_and_requeue_all_failed_with_confirmation_from_the_browser(
    bench: Bench, dashboard_url: str, page: Any, tmp_path: Path, redis_client: Any
) -> None:
    expect = sync_api.expect
    use_bench(bench)
    marker = tmp_path / "marker"
    for i in range(2):
        bench_jobs.enqueue("sample_app.tasks.echo", record_id=f"r{i}", site="alpha.test", job_name=f"named-{i}")
    alpha = [
        bench_jobs.enqueue("sample_app.tasks.fail_unless_file", path=str(marker), site="alpha.test").id
        for _ in range(2)
    ]
    beta = bench_jobs.enqueue("sample_app.tasks.fail_unless_file", path=str(marker), site="beta.test").id
    result = run_cli("worker", "--burst", bench=bench, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

    def steps() -> None:
        page.goto(dashboard_url + "/")
        chart = page.locator("svg#throughput")
        expect(chart).to_be_visible()
        expect(chart.locator(f'rect[fill="{FAILED_FILL}"]').first).to_be_attached()
        expect(chart.locator(f'rect[fill="{FINISHED_FILL}"]').first).to_be_attached()
        expect(page.locator('#queues tr[data-queue="default"] svg.spark')).to_be_visible()

        page.locator('#queues tr[data-queue="default"] a.failed').click()
        expect(page).to_have_url(re.compile(r"/jobs\?queue=default&status=failed$"))
        for job_id in [*alpha, beta]:
            expect(page.get_by_role("link", name=job_id)).to_be_visible()

        page.goto(dashboard_url + "/sites/alpha.test?status=finished")
        expect(page.locator("#jobs")).to_contain_text("named-0")
        expect(page.locator("#jobs")).to_contain_text('"record_id": "r1"')

        page.goto(dashboard_url + "/sites/alpha.test?status=failed&queue=default")
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.locator("#requeue-all").click()
        expect(page.locator("#flash")).to_have_count(0)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#requeue-all").click()
        expect(page.locator("#flash")).to_have_text("Requeued 2 failed job(s) of queue default.")

    screenshot_on_failure(page, tmp_path, steps)
    statuses = [redis_client.hget(f"rq:job:{job_id}", "status") for job_id in [*alpha, beta]]
    assert statuses == [b"queued", b"queued", b"failed"], statuses


PLANTED = "planted-by-another-port-0123456789abcdef"
ATTACK_PAGE = """<!doctype html><html><body>
<form id="attack" method="post" action="{target}">
  <input name="csrf" value="{planted}"><input name="enabled" value="0">
</form>
<script>document.getElementById("attack").submit();</script>
</body></html>"""


@pytest.fixture
def attacker() -> Iterator[Callable[[str], str]]:
    """A second HTTP server on another port of 127.0.0.1, whose page sets the dashboard's CSRF cookie
    (cookies ignore ports) and auto-posts a form carrying the same value. Returns: dashboard URL -> page URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    targets: list[str] = []

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ATTACK_PAGE.format(target=targets[-1], planted=PLANTED).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Set-Cookie", f"bj_csrf={PLANTED}; Path=/; HttpOnly; SameSite=Strict")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def page_for(dashboard: str) -> str:
        targets.append(dashboard + "/sites/alpha.test/scheduler")
        return f"http://127.0.0.1:{server.server_port}/"

    try:
        yield page_for
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("token", [None, "a-dashboard-token-of-24-chars"], ids=["no-token", "signed-in"])
def test_a_page_on_another_local_port_cannot_post_an_action(
    bench: Bench, page: Any, tmp_path: Path, attacker: Callable[[str], str], token: str | None
) -> None:
    """The review's attack in Chromium: the other port's page plants the CSRF cookie and posts the same value
    (with a signed-in session when the dashboard has a token). The dashboard refuses it with 403."""
    if token:
        update_config_file(bench.common_config_path, {"dashboard_token": token})
    port = free_port()
    process = start_cli(bench, "dashboard", "--port", str(port))
    dashboard = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(port) or process.poll() is not None, 30, "the dashboard to listen")
        assert process.poll() is None, process.communicate()[0]

        def steps() -> None:
            if token:
                page.goto(dashboard + "/")
                page.locator('input[name="token"]').fill(token)
                page.get_by_role("button", name="Sign in").click()
                sync_api.expect(page.locator("header")).to_contain_text("bench testbench")
            with page.expect_response(lambda reply: reply.url.endswith("/scheduler")) as posted:
                page.goto(attacker(dashboard))
            assert posted.value.status == 403, posted.value.status
            sync_api.expect(page.locator("#error")).to_contain_text("Refused")

        try:
            screenshot_on_failure(page, tmp_path, steps)
        except AssertionError as exc:
            kill_tree(process)
            raise AssertionError(f"{exc}\ndashboard output:\n{process.communicate()[0]}") from exc
    finally:
        kill_tree(process)
    assert read_toml(bench.site_config_path("alpha.test"))["scheduler_enabled"] is True
