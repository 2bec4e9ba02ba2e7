"""Ctrl-C and SIGTERM end a run the way an error does: cleanly, in one line, resumable.

SIGTERM (a scheduler, `kill`, a worker's cancel) would otherwise end the process on the spot: no `finally`, no
atexit, so the vLLM engine and the temporary Prefect server live on and MLflow runs stay RUNNING. Here it raises
`Terminated`, a KeyboardInterrupt, so it unwinds like Ctrl-C: the backends are released, the MLflow runs end
KILLED, Prefect marks the flow run Crashed (its own SIGTERM bridge hands the signal back to this handler), atexit
stops the temporary server. Stages that finished are cached; generation and training resume where they were.
"""
from __future__ import annotations

import signal
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, like Ctrl-C's KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise Terminated(signum)


def terminate_like_ctrl_c() -> None:
    """Install the SIGTERM handler, and make Ctrl-C raise KeyboardInterrupt even where the parent process handed
    SIGINT down ignored or blocked (both survive exec: a script's background job, a parent that a library touched);
    Python leaves an inherited SIG_IGN in place. Main thread only; a no-op elsewhere."""
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
        if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        return
    signal.pthread_sigmask(signal.SIG_UNBLOCK, set(EXIT_CODES))


def interrupted(err: KeyboardInterrupt) -> tuple[str, int]:
    """The one line and the exit code for a run stopped by a signal."""
    signum = err.signum if isinstance(err, Terminated) else signal.SIGINT
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT (Ctrl-C)"
    return (f"interrupted by {name}. Stages that finished are cached and an interrupted generation or training "
            f"resumes from its last shard or checkpoint: run the same command to go on", EXIT_CODES[signum])
