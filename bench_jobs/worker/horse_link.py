"""The link between a worker and its work-horse (horse.py): the two pipes and what travels on them, the pidfd
that says the horse has exited, reaping it, and what a horse puts back after each job.

Worker to horse: one frame per job, a 4-byte length then a pickled `Assignment` (a pipe between a process and
its own fork, so pickle reads nothing from outside); an empty frame means "stop". Horse to worker: per job,
`recording` once the job's function has returned (or raised) and its outcome is being written (the worker then
stops the job's timeout clock: a Redis outage may hold that write for as long as it lasts), then `done <resident
bytes> <1 if the job overran its timeout, else 0>`. Nothing else is ever written. A fork-per-job horse writes
only `recording`, on a pipe of its own, and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import struct
from dataclasses import dataclass, field
from typing import IO, Any

from rq.job import Job

MB = 1024 * 1024
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_FRAME_LENGTH = struct.Struct(">I")
RECORDING = "recording"  # the horse's line: the job's function returned, its outcome is being recorded


@dataclass(frozen=True)
class Assignment:
    """A claimed job as the worker hands it to its horse: the job's hash as Redis holds it after the claim
    (what the horse would fetch, so it need not), and the execution the claim created."""

    job_id: str
    job_hash: dict[bytes, bytes] | None  # None: the horse fetches the job (its hash did not encode)
    queue_name: str
    execution_id: str
    execution_created_at: float


def job_hash(job: Job) -> dict[bytes, bytes] | None:
    """`job` as its Redis hash reads back after `job.save()` (RQ's to_dict, encoded as redis-py encodes it), or
    None when some field of a malformed job does not encode or its payload was too big to inflate (the horse
    then fetches it)."""
    if getattr(job, "_payload_problem", None):  # its payload was not inflated: the horse reads it and says why
        return None
    encoder = job.connection.get_encoder()
    try:
        return {key.encode(): encoder.encode(value) for key, value in job.to_dict().items()}  # type: ignore[no-untyped-call]
    except Exception:
        return None


def read_assignment(jobs: IO[bytes]) -> Assignment | None:
    """The horse's next job, or None when told to stop or when the worker's end of the pipe is gone."""
    head = jobs.read(_FRAME_LENGTH.size)
    if len(head) < _FRAME_LENGTH.size:
        return None
    (length,) = _FRAME_LENGTH.unpack(head)
    body = jobs.read(length) if length else b""
    if not body or len(body) < length:
        return None
    assignment = pickle.loads(body)
    return assignment if isinstance(assignment, Assignment) else None


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc), else its peak (getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def describe_status(status: int | None) -> str:
    """A waitpid status in words: `signal 11, SIGSEGV` or `exit code 3`."""
    if status is None:
        return "no status"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"signal {number}, {signal.Signals(number).name}"
        return f"signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"


def exit_fd(pid: int) -> int | None:
    """A pidfd of child `pid`, readable once it exits (None without pidfd_open: Linux 5.3 and later)."""
    with contextlib.suppress(AttributeError, OSError):
        return os.pidfd_open(pid)
    return None


def restore_process(environ: dict[str, str], cwd: str) -> None:
    """In the horse after a job: put back the environment and working directory the job may have changed."""
    if os.environ != environ:
        for key in [key for key in os.environ if key not in environ]:
            del os.environ[key]
        for key, value in environ.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
    try:
        moved = os.getcwd() != cwd
    except OSError:  # the job removed the folder it moved to
        moved = True
    if moved:
        with contextlib.suppress(OSError):
            os.chdir(cwd)


@dataclass
class Horse:
    """The worker's handle on a running horse: its pid, the pipe that carries jobs to it, the pipe its answers
    come back on (non-blocking), and a pidfd that becomes readable when it exits (None without pidfd_open)."""

    pid: int
    jobs_fd: int | None  # None: a fork-per-job horse, which is handed its one job by the fork
    answers_fd: int
    exit_fd: int | None
    jobs_done: int = 0
    _pending: bytes = field(default=b"", repr=False)
    _ended: bool = field(default=False, repr=False)  # its answers pipe reached its end

    def send(self, assignment: Assignment | None) -> None:
        """Hand the horse a job, or (None) tell it to stop. BrokenPipeError when it is gone."""
        assert self.jobs_fd is not None, "a fork-per-job horse is handed no job"
        body = b"" if assignment is None else pickle.dumps(assignment, protocol=pickle.HIGHEST_PROTOCOL)
        frame = _FRAME_LENGTH.pack(len(body)) + body
        while frame:
            frame = frame[os.write(self.jobs_fd, frame) :]

    def await_answer(self, timeout_s: float) -> str | None:
        """The horse's next answer line; None when none came within `timeout_s`; "" once the horse is gone
        (its pipe ended, or it exited) without one. Once its pipe ended, only its exit is watched."""
        if b"\n" in self._pending:  # two lines came in one read
            return self._drain()
        watched = [fd for fd in (None if self._ended else self.answers_fd, self.exit_fd) if fd is not None]
        readable, _, _ = select.select(watched, [], [], max(timeout_s, 0.0))
        if not readable and (self.exit_fd is not None or not self.exited()):
            return None
        return self._drain()

    def _drain(self) -> str | None:
        """Read what the horse wrote: its answer, "" at the end of the pipe or after its exit, else None."""
        while b"\n" not in self._pending:
            if self._ended:
                return ""
            try:
                chunk = os.read(self.answers_fd, 4096)
            except BlockingIOError:  # only its pidfd woke us: it may still hold the pipe open through a child
                return "" if self.exited() else None
            if not chunk:
                self._ended = True
                return ""
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def exited(self) -> bool:
        """Whether the horse has ended (it is not reaped here, so its pid and group stay reserved)."""
        return self._peek() != "running"

    def _peek(self) -> str:
        """`running`, `ended` (not reaped yet) or `reaped` (by RQ's wait_for_horse in a cold shutdown)."""
        try:
            found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "reaped"
        return "ended" if found is not None and found.si_pid == self.pid else "running"

    def bury(self, kill: bool = True) -> tuple[int | None, Any]:
        """Kill the horse and its process group (whatever its job left running in it), reap it and close its
        pipes; returns its waitpid status and rusage. The kill comes before the reap, while the unreaped horse
        still holds its pid and group id, so no other process can be hit. `kill` False: wait for it to exit
        (a fork-per-job horse that ended, whose group is left alone, as RQ's monitor leaves it)."""
        status = rusage = None
        if self._peek() != "reaped":
            for kill_one in (os.kill, os.killpg) if kill else ():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill_one(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                _, status, rusage = os.wait4(self.pid, 0)
        for fd in (self.jobs_fd, self.answers_fd, self.exit_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return status, rusage
