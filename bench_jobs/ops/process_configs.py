"""The processes a bench runs (the scheduler and a worker per queue), and the Procfile, supervisor and
systemd configs that run them with stop timeouts that let the longest job finish."""

from __future__ import annotations

import importlib.util
import re
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ..core.bench import Bench
from ..core.config import BenchSettings, load_bench_settings
from ..jobs.queues import queue_order
from .local_redis import DATA_DIR, local_address, redis_server_args

# A warm shutdown waits for the running job. RQ's work-horse stops itself at the job's timeout, and the
# worker kills a horse that overruns by 60 s more (checked every few seconds); the stop timeout leaves room
# for both before the process manager's final SIGKILL, which would otherwise orphan the horse.
STOP_MARGIN_S = 90
SCHEDULER_STOP_S = 60  # the scheduler ends its tick and releases its lease within seconds of SIGTERM
PROCFILE = "Procfile"
DASHBOARD_STOP_S = 10  # uvicorn closes its connections and exits within a second of SIGTERM
DEFAULT_DASHBOARD_PORT = 11380  # next to start's Redis on 11311
DASHBOARD_PORT_KEY = "dashboard_port"
WEB_MODULES = ("starlette", "jinja2", "uvicorn")  # the `web` extra


@dataclass(frozen=True)
class BenchProcess:
    """One kind of long-running process: `args` follow `bench-jobs`; `instances` copies run in production."""

    name: str
    args: tuple[str, ...]
    stop_timeout_s: int
    instances: int = 1
    queue: str | None = None


def bench_processes(settings: BenchSettings) -> list[BenchProcess]:
    """The scheduler, then one worker per queue (built-in and custom) in serving order."""
    processes = [BenchProcess("schedule", ("schedule",), SCHEDULER_STOP_S)]
    for name in queue_order(settings):
        queue = settings.queues[name]
        processes.append(
            BenchProcess(
                f"worker-{name}",
                ("worker", "--queue", name),
                queue.timeout_s + STOP_MARGIN_S,
                queue.background_workers,
                name,
            )
        )
    return processes


def web_extra_installed() -> bool:
    """True when the `web` extra (the dashboard's Starlette, Jinja2 and uvicorn) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in WEB_MODULES)


def dashboard_port(settings: BenchSettings) -> int:
    """`dashboard_port` from common_site_config.toml, else DEFAULT_DASHBOARD_PORT."""
    port = settings.common.get(DASHBOARD_PORT_KEY, DEFAULT_DASHBOARD_PORT)
    return port if isinstance(port, int) and 0 <= port <= 65535 else DEFAULT_DASHBOARD_PORT


def free_local_port(preferred: int) -> int:
    """`preferred` when nothing listens on it at 127.0.0.1, else a port the system says is free, so that a
    second bench on the host still gets its dashboard instead of stopping at a taken port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    return preferred


def dashboard_process(port: int) -> BenchProcess:
    """The dashboard on 127.0.0.1:`port`, for `start` (the web extra installed)."""
    return BenchProcess("dashboard", ("dashboard", "--port", str(port)), DASHBOARD_STOP_S)


def bench_command(bench: Bench) -> list[str]:
    """This interpreter running bench-jobs on this bench, by absolute paths (for start and service files)."""
    return [sys.executable, "-m", "bench_jobs", "--bench", str(bench.root)]


def unit_prefix(settings: BenchSettings) -> str:
    """`bench-jobs-<bench_id>`: names supervisor programs and systemd units, unique per bench on a host."""
    return f"bench-jobs-{settings.bench_id}"


def procfile_text(bench: Bench) -> str:
    """A Procfile for honcho/foreman run in the bench folder: Redis when local, the scheduler, the workers."""
    settings = load_bench_settings(bench)
    lines = [
        f"# Processes of bench {settings.bench_id}: run `honcho start` in this folder. `bench-jobs start` runs them",
        "# without this file, starts Redis only when none answers, and stops it after the workers' last jobs.",
        "# Written by `bench-jobs setup procfile`; run that again after adding a queue.",
    ]
    address = local_address(settings.redis_url)
    if address is None or address.password is not None:
        lines.append("# redis: left out: redis_queue is remote, uses TLS or has a password; run that Redis yourself")
    else:
        # honcho and foreman run each line through a shell in the bench folder; the folder of the append-only
        # file is made there, so a Procfile copied to a new checkout of the bench still starts
        server = shlex.join(["redis-server", *redis_server_args(address, DATA_DIR)])
        lines.append(f"redis: mkdir -p {DATA_DIR} && exec {server}")
    lines += [f"{p.name}: " + shlex.join(["bench-jobs", *p.args]) for p in bench_processes(settings)]
    return "\n".join(lines) + "\n"


def write_procfile(bench: Bench) -> Path:
    """Write `<bench>/Procfile` (replacing any) and return its path."""
    from ..core.config_writer import write_atomic

    path = bench.root / PROCFILE
    write_atomic(path, procfile_text(bench))
    return path


def _supervisor_value(text: str) -> str:
    return text.replace("%", "%%")  # supervisor expands %(name)s in every value


def supervisor_conf(bench: Bench, user: str | None = None) -> str:
    """One supervisord include file: a program per process (numprocs = background_workers) and a group."""
    settings = load_bench_settings(bench)
    prefix = unit_prefix(settings)
    command = bench_command(bench)
    logs = bench.logs_dir
    out = [
        f"; bench-jobs processes of bench {settings.bench_id} ({bench.root}),",
        "; written by `bench-jobs setup supervisor`.",
        "; Install: copy to /etc/supervisor/conf.d/ and run `supervisorctl reread && supervisorctl update`.",
        "; Stop: SIGTERM to the worker only (warm shutdown: the running job finishes); SIGKILL after stopwaitsecs,",
        "; which exceeds the queue's job timeout. RQ's work-horse runs in a process group of its own, so",
        "; stopasgroup/killasgroup never reach it: it is stopped by the job timeout, before stopwaitsecs ends.",
        "; Jobs enqueued with a timeout above their queue's are not covered.",
    ]
    programs = []
    for process in bench_processes(settings):
        program = f"{prefix}-{process.name}"
        programs.append(program)
        log_name = f"{process.name}-%(process_num)d.log" if process.queue else f"{process.name}.log"
        out += [
            "",
            f"[program:{program}]",
            "command=" + _supervisor_value(shlex.join([*command, *process.args])),
            f"directory={_supervisor_value(str(bench.root))}",
        ]
        if user:
            out.append(f"user={user}")
        if process.queue:
            out += [
                f"numprocs={process.instances}",
                "numprocs_start=1",
                "process_name=%(program_name)s-%(process_num)d",
            ]
        out += [
            "autostart=true",
            "autorestart=true",
            "stopsignal=TERM",
            f"stopwaitsecs={process.stop_timeout_s}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_supervisor_value(str(logs))}/{log_name}",
            'environment=PYTHONUNBUFFERED="1"',
        ]
    out += ["", f"[group:{prefix}]", "programs=" + ",".join(programs)]
    return "\n".join(out) + "\n"


_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_./:=+@,-]+")


def _systemd_path(text: str) -> str:
    return text.replace("%", "%%")  # systemd expands %i, %h, ... in most settings


def _systemd_arg(arg: str) -> str:
    """One ExecStart word, quoted when needed; `%` and `$` escaped so systemd leaves them alone."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_units(bench: Bench, user: str | None = None) -> dict[str, str]:
    """Unit file name -> text: the scheduler's service, a template service per queue (instances 1..N) and
    a target that wants them all, so `systemctl enable --now <target>` starts the bench."""
    settings = load_bench_settings(bench)
    prefix = unit_prefix(settings)
    target = f"{prefix}.target"
    command = " ".join(_systemd_arg(arg) for arg in bench_command(bench))
    units: dict[str, str] = {}
    wanted: list[str] = []
    for process in bench_processes(settings):
        if process.queue:
            unit = f"{prefix}-{process.name}@.service"
            what = f"bench-jobs worker %i of queue {process.queue}"
            log_name = f"{process.name}-%i.log"
            wanted += [unit.replace("@", f"@{n}") for n in range(1, process.instances + 1)]
        else:
            unit = f"{prefix}-{process.name}.service"
            what = "bench-jobs scheduler"
            log_name = f"{process.name}.log"
            wanted.append(unit)
        lines = [
            "# Written by `bench-jobs setup systemd`. SIGTERM goes to the main process only (warm shutdown: the",
            "# running job finishes); after TimeoutStopSec, which exceeds the queue's job timeout, SIGKILL reaches",
            "# every process of the unit's control group, RQ's work-horse included (KillMode=mixed).",
            "[Unit]",
            f"Description={what}, bench {settings.bench_id} ({_systemd_path(str(bench.root))})",
            "After=network-online.target",
            "Wants=network-online.target",
            f"PartOf={target}",
            "",
            "[Service]",
            "Type=simple",
        ]
        if user:
            lines.append(f"User={user}")
        lines += [
            f"WorkingDirectory={_systemd_path(str(bench.root))}",
            "Environment=PYTHONUNBUFFERED=1",
            f"ExecStart={command} {' '.join(_systemd_arg(arg) for arg in process.args)}",
            "KillSignal=SIGTERM",
            "KillMode=mixed",
            f"TimeoutStopSec={process.stop_timeout_s}",
            "Restart=always",
            "RestartSec=5",
            f"StandardOutput=append:{_systemd_path(str(bench.logs_dir))}/{log_name}",
            "StandardError=inherit",
        ]
        units[unit] = "\n".join(lines) + "\n"
    units[target] = "\n".join(
        [
            "# Written by `bench-jobs setup systemd`: `systemctl enable --now " + target + "` runs the bench.",
            "[Unit]",
            f"Description=bench-jobs processes of bench {settings.bench_id}",
            "Wants=" + " ".join(wanted),
            "",
            "[Install]",
            "WantedBy=multi-user.target",
        ]
    )
    units[target] += "\n"
    return units
