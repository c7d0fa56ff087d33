"""The dashboard's gate, in process (Starlette's TestClient) on the session's real Redis: where an action may
come from, what its CSRF token is tied to, body and parameter limits, the sign-in and the headers
(issue 16, items 3, 4, 8 and 9). The cross-port CSRF attack in a real browser is in test_dashboard_browser."""

from __future__ import annotations

import contextlib
import logging
import re
import select
import socket
import time
from collections.abc import Iterator

import pytest
import redis

pytest.importorskip("starlette")
from starlette.testclient import TestClient
from support import kill_tree, start_cli, wait_for
from test_dashboard import ORIGIN, client_of, csrf_of, free_port

from bench_jobs.core.bench import Bench
from bench_jobs.core.config import read_toml
from bench_jobs.core.keys import new_job_id
from bench_jobs.web import security
from bench_jobs.web.security import CSRF_COOKIE, SESSION_MAX_AGE_S, TOKEN_COOKIE, session_value

TOKEN = "t" * 24


@pytest.fixture
def client(bench: Bench) -> Iterator[TestClient]:
    with client_of(bench) as test_client:
        yield test_client


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def scheduler_enabled(bench: Bench) -> bool:
    return bool(read_toml(bench.site_config_path("alpha.test"))["scheduler_enabled"])


def disable(client: TestClient, csrf: str, **headers: str) -> int:
    reply = client.post("/sites/alpha.test/scheduler", data={"csrf": csrf, "enabled": "0"}, headers=headers)
    return reply.status_code


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://127.0.0.1:8001"},
        {"Origin": "null"},
        {"Origin": ORIGIN, "Sec-Fetch-Site": "same-site"},
        {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["another-port", "null-origin", "same-site", "cross-site"],
)
def test_an_action_from_another_origin_is_refused(bench: Bench, client: TestClient, headers: dict[str, str]) -> None:
    csrf = csrf_of(client.get("/sites/alpha.test").text)
    assert disable(client, csrf, **headers) == 403
    assert scheduler_enabled(bench)


def test_an_action_naming_no_origin_needs_a_same_origin_referer(bench: Bench, client: TestClient) -> None:
    csrf = csrf_of(client.get("/sites/alpha.test").text)
    del client.headers["Origin"]
    assert disable(client, csrf) == 403
    assert disable(client, csrf, Referer="http://127.0.0.1:9999/sites/alpha.test") == 403
    assert scheduler_enabled(bench)
    assert disable(client, csrf, Referer=f"{ORIGIN}/sites/alpha.test", **{"Sec-Fetch-Site": "same-origin"}) == 200
    assert not scheduler_enabled(bench)


def test_a_planted_csrf_cookie_echoed_in_the_form_is_refused(bench: Bench, client: TestClient) -> None:
    """What a page on another port of 127.0.0.1 can do: set the CSRF cookie (cookies ignore ports) and post
    the same value. The form's token is an HMAC under the process's secret, so the echo is no token."""
    planted = "p" * 43
    client.cookies.set(CSRF_COOKIE, planted)
    assert disable(client, planted) == 403
    assert scheduler_enabled(bench)
    page = client.get("/sites/alpha.test").text
    assert csrf_of(page) != planted and planted not in page
    assert disable(client, csrf_of(page)) == 200


def test_a_csrf_token_is_tied_to_the_dashboard_process(bench: Bench) -> None:
    with client_of(bench) as first, client_of(bench) as second:
        csrf = csrf_of(first.get("/sites/alpha.test").text)
        second.cookies.set(CSRF_COOKIE, first.cookies[CSRF_COOKIE])
        assert disable(second, csrf) == 403
    assert scheduler_enabled(bench)


def test_login_from_another_origin_is_refused(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        reply = client.post("/login", data={"token": TOKEN}, headers={"Origin": "http://127.0.0.1:8001"})
        assert reply.status_code == 403 and TOKEN_COOKIE not in client.cookies


def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read(client: TestClient) -> None:
    reply = client.post("/login", content=b"token=x", headers={"Content-Length": str(400 * 1024 * 1024)})
    assert reply.status_code == 413 and "Traceback" not in reply.text


def test_a_streamed_body_is_cut_at_the_cap(bench: Bench, client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x" * 65536

    csrf = csrf_of(client.get("/sites/alpha.test").text)
    reply = client.post("/sites/alpha.test/scheduler", content=chunks(), headers={"Content-Type": "text/plain"})
    assert reply.status_code == 413 and "Traceback" not in reply.text
    assert disable(client, csrf) == 200


@pytest.mark.slow
def test_a_real_dashboard_answers_a_chunked_flood_with_413_after_reading_little(bench: Bench) -> None:
    """uvicorn on a socket: a chunked POST to /login (no Content-Length) gets its 413 while the client is
    still sending, long before 64 MB went over the wire."""
    port = free_port()
    process = start_cli(bench, "dashboard", "--port", str(port))
    try:
        wait_for(lambda: answers(port) or process.poll() is not None, 30, "the dashboard to listen")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"10000\r\n" + b"a" * 65536 + b"\r\n"
            sent = 0
            with contextlib.suppress(OSError):
                while sent < 1024 and not select.select([sock], [], [], 0)[0]:  # 64 MB at most
                    sock.sendall(chunk)
                    sent += 1
            reply = sock.recv(65536).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 413"), reply[:200]
        assert sent < 256, f"{sent} chunks of 64 KB went in before the 413"
    finally:
        kill_tree(process)


def test_an_unauthenticated_big_login_is_413(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        assert client.post("/login", content=b"a" * 20_000).status_code == 413


@pytest.fixture
def errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.ERROR, logger="bench_jobs.web")
    yield caplog
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("path", ["/sites/alpha.test?page=²", "/sites?page=" + "9" * 5000, "/sites?page=١"])
def test_odd_page_numbers_are_a_400_page(client: TestClient, errors_logged: object, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 400 and "Traceback" not in page.text


def test_non_ascii_secrets_are_refused_not_errors(bench: Bench, errors_logged: object) -> None:
    with client_of(bench, token=TOKEN) as client:
        bearer: dict[str, str] = {"Authorization": "Bearer tøken-ünicode-xxxx".encode()}  # type: ignore[dict-item]
        assert client.get("/", headers=bearer).status_code == 401
        assert client.post("/login", data={"token": "tøken-ünicode"}).status_code == 401
        cookie: dict[str, str] = {"Cookie": f"{TOKEN_COOKIE}=sessiön".encode()}  # type: ignore[dict-item]
        assert client.get("/", headers=cookie).status_code == 401
    with client_of(bench) as client:
        client.get("/sites/alpha.test")
        assert disable(client, "csrf-ünicode") == 403
        cookie = {"Cookie": f"{CSRF_COOKIE}={'cöokie' * 8}".encode()}  # type: ignore[dict-item]
        assert client.get("/sites/alpha.test", headers=cookie).status_code == 200
    assert scheduler_enabled(bench)


def test_a_malformed_job_hash_is_a_404_page(
    bench: Bench, client: TestClient, redis_client: redis.Redis, errors_logged: object
) -> None:
    job_id = new_job_id("testbench", "alpha.test")
    redis_client.hset(
        f"rq:job:{job_id}",
        mapping={"data": b"{}", "origin": "testbench:default", "status": "exploded", "created_at": "yesterday"},
    )
    page = client.get(f"/sites/alpha.test/jobs/{job_id}")
    assert page.status_code == 404 and "malformed" in page.text and "Traceback" not in page.text


def test_a_read_only_dashboard_answers_an_action_with_405(bench: Bench) -> None:
    with client_of(bench, read_only=True) as client:
        csrf = csrf_of(client_of(bench).get("/sites/alpha.test").text)
        reply = client.post("/sites/alpha.test/scheduler", data={"csrf": csrf, "enabled": "0"})
        assert reply.status_code == 405 and "read-only" in reply.text
    assert scheduler_enabled(bench)


def test_every_response_says_nosniff_and_no_framing(client: TestClient) -> None:
    for path in ("/", "/metrics", "/nowhere"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]


def test_pages_before_sign_in_do_not_name_the_bench(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        for reply in (client.get("/"), client.get("/login"), client.post("/login", data={"token": "wrong" * 5})):
            assert reply.status_code in (401, 405)
            assert "testbench" not in reply.text and "None" not in reply.text
        assert "testbench" in client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).text


def test_only_a_bearer_token_is_accepted_in_the_authorization_header(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        assert client.get("/", headers={"Authorization": TOKEN}).status_code == 401
        assert client.get("/", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.get("/", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_a_session_expires_in_the_browser_and_on_the_server(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        reply = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        cookie = reply.headers["set-cookie"]
        assert re.search(rf"{TOKEN_COOKIE}=[^;]+;.*Max-Age={SESSION_MAX_AGE_S}", cookie, re.IGNORECASE), cookie
        assert client.get("/").status_code == 200
        client.cookies.clear()
        client.cookies.set(TOKEN_COOKIE, session_value(TOKEN, int(time.time()) - SESSION_MAX_AGE_S - 60))
        assert client.get("/").status_code == 401
        client.cookies.clear()
        client.cookies.set(TOKEN_COOKIE, session_value("x" * 24, int(time.time())))
        assert client.get("/").status_code == 401


def test_login_always_lands_on_the_overview(bench: Bench) -> None:
    with client_of(bench, token=TOKEN) as client:
        reply = client.post("/login?next=https://evil.example/", data={"token": TOKEN}, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == "/"


def test_a_flash_message_cannot_inject_headers(bench: Bench, client: TestClient) -> None:
    csrf = csrf_of(client.get("/sites/alpha.test").text)
    reply = client.post(
        "/sites/alpha.test/purge", data={"csrf": csrf, "queue": "x\r\nSet-Cookie: evil=1"}, follow_redirects=False
    )
    assert reply.status_code == 400 and "evil" not in client.cookies


def test_bearer_token_parsing() -> None:
    assert security.bearer_token("Bearer abc") == "abc"
    assert security.bearer_token("abc") is None
    assert security.bearer_token("Bearer ") is None
    assert security.bearer_token(None) is None


def test_a_flash_message_planted_from_another_port_is_not_shown(bench: Bench, client: TestClient) -> None:
    """Cookies ignore ports: a page on another port can set the flash cookie, so the dashboard shows only a
    message it sealed itself."""
    client.cookies.set("bj_flash", "Your%20token%20expired%3A%20sign%20in%20at%20http%3A%2F%2Fevil.example")
    page = client.get("/sites/alpha.test")
    assert page.status_code == 200 and "evil.example" not in page.text and 'id="flash"' not in page.text
    done = client.post("/sites/alpha.test/scheduler", data={"csrf": csrf_of(page.text), "enabled": "0"})
    assert done.status_code == 200 and "Scheduler disabled" in done.text
