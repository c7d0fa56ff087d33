"""Chaos under a Sentinel failover (`chaos.py --failover`): a master, two replicas and three Sentinels of this
run's own on loopback ports; workers run jobs while this process enqueues at a steady rate; the master is
SIGKILLed mid-way and the Sentinels promote a replica. Every run of a job is appended to a file (not to
Redis, which is what fails here), then each acknowledged job is counted: lost (never ran) or twice.

    python benchmarks/chaos.py --failover --jobs 600 --workers 2 --kills 2

It runs once with redis_queue_wait_replicas = 0 and once with 1, and prints both. There is no plain-RQ row:
RQ's worker takes one Redis URL and cannot follow a Sentinel failover at all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from harness import Children, HarnessError, clean_env, find_redis_server, worker_env

SERVICE = "chaosmaster"
APP = "failover_app"
TASK = f"{APP}.tasks.mark"
RATE_HZ = 50  # enqueue attempts per second
DRAIN_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Topology:
    children: Children
    servers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    sentinel_ports: list[int] = field(default_factory=list)

    def sentinel(self) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.sentinel_ports[0], decode_responses=True, socket_timeout=2)

    def master_port(self) -> int:
        for port in self.sentinel_ports:
            try:
                client = redis.Redis("127.0.0.1", port, decode_responses=True, socket_timeout=2)
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
            except redis.RedisError:
                continue
        raise HarnessError("no Sentinel answers")


def _start(binary: str, folder: Path, replicas: int) -> Topology:
    top = Topology(Children())
    master = _free_port()
    for index in range(replicas + 1):
        port = master if index == 0 else _free_port()
        here = folder / f"redis{index}"
        here.mkdir(parents=True)
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(here)]
        args += ["--appendonly", "no"] + ([] if index == 0 else ["--replicaof", "127.0.0.1", str(master)])
        top.servers[port] = top.children.start(args, env=clean_env(), cwd=here, log=here / "redis.log")
    for index in range(3):
        port = _free_port()
        here = folder / f"sentinel{index}"
        here.mkdir(parents=True)
        (here / "sentinel.conf").write_text(
            f"port {port}\nbind 127.0.0.1\ndir {here}\nsentinel monitor {SERVICE} 127.0.0.1 {master} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 3000\n"
        )
        args = [binary, str(here / "sentinel.conf"), "--sentinel"]
        top.children.start(args, env=clean_env(), cwd=here, log=here / "sentinel.log")
        top.sentinel_ports.append(port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            states = [
                redis.Redis("127.0.0.1", p, decode_responses=True, socket_timeout=1).sentinel_master(SERVICE)
                for p in top.sentinel_ports
            ]
            if all(int(s["num-slaves"]) >= replicas and int(s["num-other-sentinels"]) >= 2 for s in states):
                return top
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise HarnessError("the Sentinels did not see the replicas and each other within 60 s")


def _make_bench(root: Path, top: Topology, wait_replicas: int) -> None:
    sentinels = ", ".join(f'"127.0.0.1:{p}"' for p in top.sentinel_ports)
    (root / "sites" / "chaos.site").mkdir(parents=True)
    (root / "sites" / "common_site_config.toml").write_text(
        f'redis_queue = "redis://127.0.0.1:1"\nbench_id = "failover"\napps = ["{APP}"]\n'
        f"redis_queue_sentinel_enabled = true\nredis_queue_sentinels = [{sentinels}]\n"
        f'redis_queue_master_service = "{SERVICE}"\nredis_queue_wait_replicas = {wait_replicas}\n'
    )
    (root / "sites" / "chaos.site" / "site_config.toml").write_text('timezone = "UTC"\n')
    app = root / "apps" / APP
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "hooks.py").write_text("scheduler_events = {}\n")
    (app / "tasks.py").write_text(
        "import os\n\n\ndef mark(n):\n"
        f'    with open({str(root / "runs.txt")!r}, "a") as out:\n'
        "        out.write(f'{n}\\n')\n"
    )
    (root / "logs").mkdir()


@dataclass
class Outcome:
    wait_replicas: int
    acknowledged: int = 0
    refused: int = 0
    lost: int = 0
    twice: int = 0
    failover_s: list[float] = field(default_factory=list)  # from each kill to the first enqueue acknowledged after
    workers_alive: int = 0
    workers: int = 0


def run_once(binary: str, jobs: int, workers: int, kills: int, wait_replicas: int, keep: bool) -> Outcome:
    folder = Path(tempfile.mkdtemp(prefix="bench-jobs-failover-"))
    top = _start(binary, folder, replicas=kills + 1)  # after each kill the new master keeps a replica
    outcome = Outcome(wait_replicas, workers=workers)
    try:
        root = folder / "bench"
        _make_bench(root, top, wait_replicas)
        env = worker_env(folder, BENCH_JOBS_BENCH=str(root))
        procs = [
            top.children.start(
                [sys.executable, "-m", "bench_jobs", "worker", "--queue", "default"],
                env=env,
                cwd=root,
                log=folder / f"worker{i}.log",
            )
            for i in range(workers)
        ]
        os.environ["BENCH_JOBS_BENCH"] = str(root)
        import bench_jobs
        from bench_jobs.core import connection
        from bench_jobs.core.bench import Bench
        from bench_jobs.core.context import use_bench

        connection.forget_connections()
        use_bench(Bench(root))
        acked: list[int] = []
        kill_at = [jobs * (k + 1) // (kills + 1) for k in range(kills)]
        killed_at: list[float] = []
        for n in range(jobs):
            if kill_at and n == kill_at[0]:
                kill_at.pop(0)
                port = top.master_port()
                top.servers[port].send_signal(signal.SIGKILL)
                top.servers[port].wait()
                killed_at.append(time.monotonic())
                print(f"  wait_replicas={wait_replicas}: SIGKILL master :{port} after {len(acked)} acknowledged")
            try:
                bench_jobs.enqueue(TASK, site="chaos.site", n=n)
                acked.append(n)
                if len(outcome.failover_s) < len(killed_at):
                    outcome.failover_s.append(time.monotonic() - killed_at[len(outcome.failover_s)])
            except bench_jobs.BenchJobsError:
                outcome.refused += 1
            time.sleep(1 / RATE_HZ)
        runs_path = root / "runs.txt"
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = len(runs_path.read_text().splitlines()) if runs_path.exists() else 0
            if done != last:
                last, last_change = done, time.monotonic()
            if set(acked) <= _ran(runs_path).keys() and time.monotonic() - last_change > 3:
                break
            if time.monotonic() - last_change > 20:
                break
            time.sleep(0.5)
        ran = _ran(runs_path)
        outcome.acknowledged = len(acked)
        outcome.lost = sum(1 for n in acked if ran[n] == 0)
        outcome.twice = sum(1 for times in ran.values() if times > 1)
        outcome.workers_alive = sum(1 for p in procs if p.poll() is None)
    finally:
        top.children.stop_all()
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return outcome


def _ran(path: Path) -> Counter[int]:
    return Counter(int(line) for line in path.read_text().split() if line) if path.exists() else Counter()


def run_failover(jobs: int, workers: int, kills: int, keep: bool) -> int:
    binary = find_redis_server()
    print(f"failover chaos: {jobs} jobs at {RATE_HZ}/s, {workers} worker(s), {kills} master SIGKILL(s) per run")
    outcomes = [run_once(binary, jobs, workers, kills, wait, keep) for wait in (0, 1)]
    print()
    print(f"{'wait_replicas':>13} {'acked':>6} {'refused':>7} {'lost':>5} {'twice':>5} {'failover s':>11} workers")
    for o in outcomes:
        fo = ", ".join(f"{s:.1f}" for s in o.failover_s) or "-"
        print(
            f"{o.wait_replicas:>13} {o.acknowledged:>6} {o.refused:>7} {o.lost:>5} {o.twice:>5} {fo:>11} "
            f"{o.workers_alive}/{o.workers} alive"
        )
    print(json.dumps({"failover": [o.__dict__ for o in outcomes]}))
    safe = outcomes[1]
    return 0 if safe.lost == 0 and safe.twice == 0 and safe.workers_alive == safe.workers else 1


if __name__ == "__main__":
    sys.exit(run_failover(600, 2, 1, False))
