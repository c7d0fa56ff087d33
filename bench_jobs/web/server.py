"""Serving the dashboard: check the address and the token before binding, bind, then run uvicorn."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from ..core.bench import Bench
from ..errors import BenchJobsError, ConfigError
from .security import Access, resolve_access

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stops_before_serving: list[int] = []


def hold_stop_signals() -> None:
    """Note a SIGTERM or Ctrl-C that comes before uvicorn serves (while the app is imported and built), so
    that it still stops the dashboard cleanly (exit 0) instead of killing it: `start` stops its processes
    at any moment, also just after starting them."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, frame: _stops_before_serving.append(received))


@dataclass(frozen=True)
class Listener:
    """A bound socket and what the dashboard on it needs: the access rule and its URL."""

    sock: socket.socket
    access: Access
    url: str


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}.")


def listen(bench: Bench, host: str, port: int, new_token: bool) -> Listener:
    """Check the port and the token rule for `host` (ConfigError, exit 2), then bind (BenchJobsError, exit 1,
    when the address is taken or not ours), so every refusal comes before anything listens."""
    check_port(port)
    if not host.strip():
        raise ConfigError("--host is empty.", hint="Give an address to bind, such as 127.0.0.1 or 0.0.0.0.")
    access = resolve_access(bench, host, new_token)
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise BenchJobsError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            hint="Pick another --port, or stop what listens there.",
        ) from None
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return Listener(sock, access, f"http://{shown}:{bound_port}/")


def serve(bench: Bench, listener: Listener, read_only: bool) -> None:
    """Run the dashboard on the listener's socket until SIGINT or SIGTERM."""
    import uvicorn

    from .app import Dashboard, create_app

    class QuietExit(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server, but a SIGTERM or Ctrl-C is a clean stop (exit 0), as for the bench's other
        processes: uvicorn itself raises the signal again once stopped, and `start` would report a kill."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {signum: signal.signal(signum, self.handle_exit) for signum in STOP_SIGNALS}
            if _stops_before_serving:
                self.should_exit = True
            try:
                yield
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)

    app = create_app(Dashboard(bench, read_only=read_only, token=listener.access.token))
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)
    QuietExit(config).run(sockets=[listener.sock])
