"""No orphans: child processes that end when their parent dies, SIGKILL included (Linux PR_SET_PDEATHSIG).

A child started in a session of its own (out of Ctrl-C's reach, or to be ended as a group) would otherwise outlive
a run killed by the OOM killer or a lost worker: the temporary Prefect server, `accelerate launch` and the ranks it
starts (torchrun gives every rank a session of its own).
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable

PR_SET_PDEATHSIG = 1


def libc_prctl() -> Any:
    """libc's prctl on Linux, else None. Look it up before a fork: between fork and exec a child must not load
    libraries (another thread of the parent may hold the loader's lock)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent(prctl: Any, signum: int = signal.SIGKILL) -> None:
    """Have the kernel send `signum` to this process when its parent dies; exit now if it already has."""
    if prctl is None:
        return
    parent = os.getppid()
    prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def dying_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `signum` when this process dies."""
    prctl = libc_prctl()
    return lambda: die_with_parent(prctl, signum)
