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


STAGE_PID_ENV = "S3FT_STAGE_PID"
"""Set for `accelerate launch` by the stage that starts it: a rank's parent is the launcher, its grandparent the stage."""


def die_with_parent(prctl: Any, signum: int = signal.SIGKILL, grandparent: int | None = None) -> None:
    """Have the kernel send `signum` to this process when its parent dies; exit now if it already has (or, given
    `grandparent`, if the parent is no longer that process's child: the parent died before this process could
    ask, and an adoptive parent took its place)."""
    if prctl is None:
        return
    parent = os.getppid()
    prctl(PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent or (grandparent is not None and _parent_of(parent) != grandparent):
        os._exit(1)


def _parent_of(pid: int) -> int | None:
    try:  # /proc/PID/stat: "pid (comm) state ppid ...", comm may hold spaces and parentheses
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def dying_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `signum` when this process dies."""
    prctl = libc_prctl()
    return lambda: die_with_parent(prctl, signum)
