"""The site context API: current_site, site_config, site_context and logger (DESIGN 4)."""

from __future__ import annotations

import pytest

import bench_jobs
from bench_jobs.core.bench import Bench
from bench_jobs.core.context import use_bench
from bench_jobs.errors import BenchJobsError


def test_site_context_sets_and_restores_the_current_site(bench: Bench) -> None:
    use_bench(bench)
    assert bench_jobs.current_site() is None
    with bench_jobs.site_context("alpha.test"):
        assert bench_jobs.current_site() == "alpha.test"
        with bench_jobs.site_context("beta.test"):
            assert bench_jobs.current_site() == "beta.test"
            assert bench_jobs.site_config()["timezone"] == "Europe/Berlin"
            assert bench_jobs.site_config()["bench_id"] == "testbench"
        assert bench_jobs.current_site() == "alpha.test"
    assert bench_jobs.current_site() is None


def test_site_config_outside_a_site_says_what_to_do(bench: Bench) -> None:
    use_bench(bench)
    with pytest.raises(BenchJobsError, match="No site context") as caught:
        bench_jobs.site_config()
    assert "site_context" in (caught.value.hint or "")


def test_logger_writes_to_the_bench_log_and_the_current_sites_log(bench: Bench) -> None:
    use_bench(bench)
    log = bench_jobs.logger("billing")
    with bench_jobs.site_context("alpha.test"):
        log.info("invoice sent")
    with bench_jobs.site_context("beta.test"):
        log.warning("card declined")
    log.info("outside any site")
    bench_log = (bench.logs_dir / "billing.log").read_text()
    assert "[alpha.test] invoice sent" in bench_log
    assert "[beta.test] card declined" in bench_log
    assert "[-] outside any site" in bench_log
    alpha = (bench.logs_dir / "alpha.test" / "billing.log").read_text()
    beta = (bench.logs_dir / "beta.test" / "billing.log").read_text()
    assert "invoice sent" in alpha and "card declined" not in alpha
    assert "card declined" in beta and "invoice sent" not in beta
    assert bench_jobs.logger("billing") is log


def test_hooks_get_only_the_keywords_their_signature_accepts() -> None:
    from typing import Any

    from bench_jobs.core.context import call_accepting

    offered = {"method": "a.b.c", "kwargs": {"x": 1}, "transaction_type": "job", "result": 3}

    def bare() -> str:
        return "bare"

    def some(method: str, *, result: Any = None) -> tuple[str, Any]:
        return method, result

    def every(method: str, **rest: Any) -> dict[str, Any]:
        return {"method": method, **rest}

    assert call_accepting(bare, offered) == "bare"
    assert call_accepting(some, offered) == ("a.b.c", 3)
    assert call_accepting(every, offered) == offered
