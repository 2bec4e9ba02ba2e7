"""The servers a run talks to: the MLflow tracking server and the Prefect API.

Both are checked before any work (a dead server is one line, not minutes of retries and a traceback), and a
connection lost in the middle of a run becomes one line too: stages that finished are cached (their files and
Prefect's records are local), so the same command resumes once the server is back.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from tasks.core.config import ExperimentConfig
from tasks.core.errors import ServiceError, causes

PROBE_SECONDS = 5.0

MLFLOW_FIX = ("Fix: start that server, point tracking.tracking_uri / MLFLOW_TRACKING_URI at a running one, or unset "
              "both to track in the sqlite file under output_dir")
PREFECT_FIX = ("Fix: start it (`prefect server start`, or `make ui`), or unset PREFECT_API_URL so that the run "
               "starts a temporary server of its own")


def _probe(url: str) -> str | None:
    """None when `url` answers 200; else the reason."""
    import httpx

    try:
        response = httpx.get(url, timeout=PROBE_SECONDS)
    except httpx.HTTPError as err:
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def prefect_api_url() -> str | None:
    """The Prefect API this process will use; None: a temporary server of its own."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url).rstrip("/") if url else None


def check_services(cfg: ExperimentConfig) -> None:
    """Fail before any work when the MLflow tracking server or the Prefect API named for this run is down."""
    uri = cfg.tracking_uri()
    if uri.startswith(("http://", "https://")) and (why := _probe(uri.rstrip("/") + "/health")):
        raise ServiceError(f"MLflow tracking server {uri} is not answering ({why}). {MLFLOW_FIX}")
    api = prefect_api_url()
    if api and (why := _probe(api + "/health")):
        raise ServiceError(f"Prefect API {api} is not answering ({why}). {PREFECT_FIX}")


def _url_of(err: BaseException) -> str:
    try:
        return str(err.request.url)  # type: ignore[attr-defined]  # httpx and requests errors carry the request
    except (AttributeError, RuntimeError):
        return ""


def _lost(where: str, err: BaseException, fix: str) -> ServiceError:
    return ServiceError(f"lost the connection to {where} during the run ({type(err).__name__}). Stages that "
                        f"finished are cached: bring the server back and run the same command. {fix}")


def lost_service(err: BaseException) -> ServiceError | None:
    """The one line for a run that lost its MLflow server or Prefect API midway; None for any other error."""
    import httpx
    import requests

    mlflow = sys.modules.get("mlflow")
    tracking = mlflow.get_tracking_uri() if mlflow is not None else ""
    api = os.environ.get("PREFECT_API_URL", "")
    for e in causes(err):
        url = _url_of(e)
        if tracking.startswith("http") and (isinstance(e, requests.ConnectionError) and url.startswith(tracking) or (
                type(e).__name__ == "MlflowException" and tracking in str(e) and "Max retries exceeded" in str(e))):
            return _lost(f"MLflow tracking server {tracking}", e, MLFLOW_FIX)
        connection = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.RemoteProtocolError)
        if isinstance(e, connection) and (url.startswith(api) if api else "127.0.0.1" in url and "/api/" in url):
            return _lost(f"Prefect API {api or '(the run’s temporary server)'}", e, PREFECT_FIX)
    return None


def tracking_server_argv(root: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """`mlflow server` over `root`: runs in root/mlflow.db (the file `s3ft run` writes when no server is named, so
    earlier runs show up), artifacts in root/mlartifacts, served over HTTP (`--serve-artifacts`): a worker on
    another machine logs and reads them through the server alone. Flows log to it with
    MLFLOW_TRACKING_URI=http://HOST:PORT."""
    root = root.expanduser().resolve()
    return [str(Path(sys.executable).parent / "mlflow"), "server", "--host", host, "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
            "--artifacts-destination", str(root / "mlartifacts"), "--workers", "1"]


def serve_tracking(root: Path, port: int, host: str = "127.0.0.1") -> None:
    """Replace this process with the tracking server (no return); no job-execution workers (~250 MB each)."""
    root.mkdir(parents=True, exist_ok=True)
    argv = tracking_server_argv(root, port, host)
    print(f"MLflow tracking server on http://{host}:{port} (runs: {argv[argv.index('--backend-store-uri') + 1]}); "
          f"log to it with MLFLOW_TRACKING_URI=http://{host}:{port}", flush=True)
    os.execve(argv[0], argv, dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
