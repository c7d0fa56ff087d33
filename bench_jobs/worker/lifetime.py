"""Processes a worker forks never outlive it.

A work-horse that outlives its SIGKILLed parent keeps running a job that recovery has already handed back,
so the job completes twice; RQ's retry scheduler left behind keeps its locks and enqueues with stale code.
On Linux each such child asks the kernel for a signal when its parent dies (PR_SET_PDEATHSIG). Elsewhere
nothing is set up, and recovery relies on liveness alone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> bool:
    """Have this process receive `sig` when `parent_pid` (the process that forked it) dies; exits at once if
    it died already. Returns whether the kernel took the request (False off Linux)."""
    if _libc is None:
        return False
    if _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    # The parent may have died between the fork and the prctl: then we were already adopted by another
    # process (compare with the pid, not with 1: sub-reapers and container inits adopt orphans too).
    if os.getppid() != parent_pid:
        os._exit(1)
    return True
