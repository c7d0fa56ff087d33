"""A real Redis master, its replicas and three Sentinels on free loopback ports in a temporary folder."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from support import RedisServer, redis_server_binary, start_redis, wait_for

SERVICE = "benchmaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SentinelSet:
    """The master and replicas (by TCP port) and the Sentinels watching them as SERVICE."""

    servers: dict[int, RedisServer]
    sentinel_ports: list[int]
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.sentinel_ports[index], decode_responses=True, socket_timeout=2)

    def master_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name(SERVICE)[1])

    def client(self, port: int) -> redis.Redis:
        return redis.Redis("127.0.0.1", port, socket_timeout=5)

    def config(self, wait_replicas: int = 0) -> str:
        """The common_site_config.toml lines that point a bench at this set."""
        sentinels = ", ".join(f'"{a}"' for a in self.addresses)
        return (
            f"redis_queue_sentinel_enabled = true\nredis_queue_sentinels = [{sentinels}]\n"
            f'redis_queue_master_service = "{SERVICE}"\nredis_queue_wait_replicas = {wait_replicas}\n'
        )

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = self.master_port()
        self.servers[port].process.kill()
        self.servers[port].process.wait(10)
        return port

    def wait_for_failover(self, old_port: int, timeout_s: float = 30) -> int:
        """Wait until every Sentinel names a new master that answers as one; its port."""

        def promoted() -> int | None:
            ports = set()
            for index in range(len(self.sentinel_ports)):
                with contextlib.suppress(redis.RedisError):
                    ports.add(int(self.sentinel(index).sentinel_get_master_addr_by_name(SERVICE)[1]))
            if len(ports) != 1 or old_port in ports:
                return None
            port = ports.pop()
            role = self.client(port).execute_command("ROLE")[0]
            return port if role == b"master" else None

        return int(wait_for(promoted, timeout_s, "the Sentinels to promote a replica"))

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for server in self.servers.values():
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(10)


def start_sentinel_set(folder: Path, replicas: int = 1, sentinels: int = 3) -> SentinelSet:
    """Start a master, `replicas` replicas of it and `sentinels` Sentinels (quorum 2); wait until every
    Sentinel sees every replica and every other Sentinel."""
    master_port = free_port()
    servers = {master_port: start_redis(folder / "master", master_port)}
    for index in range(replicas):
        port = free_port()
        extra = ("--replicaof", "127.0.0.1", str(master_port))
        servers[port] = start_redis(folder / f"replica{index}", port, extra)
    found = SentinelSet(servers, [])
    try:
        for index in range(sentinels):
            port = free_port()
            here = folder / f"sentinel{index}"
            here.mkdir(parents=True)
            conf = here / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {here}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            process = subprocess.Popen(
                [redis_server_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            found.sentinels.append(process)
            found.sentinel_ports.append(port)
        wait_for(lambda: _all_see(found, replicas, sentinels), 30, "the Sentinels to see the replicas and each other")
    except BaseException:
        found.stop()
        raise
    return found


def _all_see(found: SentinelSet, replicas: int, sentinels: int) -> bool:
    for index in range(sentinels):
        try:
            state = found.sentinel(index).sentinel_master(SERVICE)
        except redis.RedisError:
            return False
        if int(state["num-slaves"]) < replicas or int(state["num-other-sentinels"]) < sentinels - 1:
            return False
    linked = all(
        found.client(port).info("replication").get("master_link_status") == "up"
        for port in found.servers
        if port != next(iter(found.servers))
    )
    if not linked:
        time.sleep(0.05)
    return linked
