"""The run's temporary Prefect server (no PREFECT_API_URL), started in a session of its own.

Prefect starts it on first use as a child in the run's process group, so Ctrl-C in the terminal kills it at the
same moment as it interrupts the run: the run then spends minutes retrying to report "Crashed" to a dead server
and ends on a lost connection. Started here first (Prefect's own SubprocessASGIServer, which the Prefect client
then finds and reuses), the server is out of the terminal's reach: the interrupted run reports to it, and atexit
stops it. It still never outlives the run: the kernel sends it SIGTERM when the run's process dies, SIGKILL
included (Linux PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import functools
import signal
import subprocess
import sys
from unittest import mock

from tasks.engines.orphans import dying_with_parent


def start_temporary_server() -> str | None:
    """Start the temporary server unless a Prefect API is configured; its API URL, or None."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled or not sys.platform.startswith("linux"):
        return None
    from prefect.server.api import server

    detached = functools.partial(subprocess.Popen, start_new_session=True, preexec_fn=dying_with_parent(signal.SIGTERM))
    with mock.patch.object(server.subprocess, "Popen", detached):
        temporary = server.SubprocessASGIServer()
        temporary.start()
    return temporary.api_url
