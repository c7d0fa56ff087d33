"""Regenerate the dashboard's screenshots in docs/: the demo bench (`bench-jobs init`, then `bench-jobs start`
with its own Redis on a free port) given a few waves of jobs, some failing, shot in headless Chromium
(Debian's /usr/bin/chromium driven by Playwright, as tests/test_dashboard_browser.py does).

    python docs/screenshots.py          # about a minute and a half; writes docs/dashboard*.png
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
WAVES = 4  # of jobs, WAVE_GAP_S apart, so the chart has a few bars
WAVE_GAP_S = 20
ENQUEUE = """
import bench_jobs
for i in range({count}):
    bench_jobs.enqueue(
        "demo_app.tasks.send_report", record_id=f"INV-{wave}{{i:02d}}", job_name="invoice mail", site="{site}"
    )
    bench_jobs.enqueue("demo_app.tasks.greet", name=f"user {wave}.{{i}}", queue="short", site="{site}")
for i in range({failing}):
    bench_jobs.enqueue("demo_app.tasks.send_report", record_id=f"BAD-{wave}{{i}}", delay_s="soon", site="{site}")
bench_jobs.enqueue("demo_app.tasks.send_report", record_id="SLOW-{wave}", delay_s=40, queue="long", site="{site}")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "bench_jobs", *args], cwd=cwd, check=True, capture_output=True)


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        bench = Path(folder) / "demo-bench"
        cli("init", str(bench), "--redis-url", f"redis://127.0.0.1:{free_port()}", cwd=Path(folder))
        cli("new-site", "shop.example.com", cwd=bench)
        start = subprocess.Popen(
            [sys.executable, "-m", "bench_jobs", "start"],
            cwd=bench,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            url = None
            assert start.stdout is not None
            for line in start.stdout:
                found = re.search(r"dashboard at (http://\S+?)/?$", line.strip())
                if found:
                    url = found.group(1)
                    break
            if url is None:
                raise SystemExit("bench-jobs start printed no dashboard URL")
            for wave in range(WAVES):
                for site in ("site1.local", "shop.example.com"):
                    code = ENQUEUE.format(count=6 + 4 * wave, failing=1 + wave % 2, wave=wave, site=site)
                    subprocess.run([sys.executable, "-c", code], cwd=bench, check=True)
                time.sleep(WAVE_GAP_S)
            shoot(url)
        finally:
            os.killpg(start.pid, signal.SIGTERM)
            start.wait(60)
    return 0


def shoot(url: str) -> None:
    pages = [
        ("/", "dashboard.png"),
        ("/sites/site1.local?status=failed", "dashboard-site.png"),
        ("/schedule?site=site1.local", "dashboard-schedule.png"),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            for path, name in pages:
                page.goto(url + path)
                page.screenshot(path=str(DOCS / name), full_page=True)
                print(f"wrote docs/{name}")
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
