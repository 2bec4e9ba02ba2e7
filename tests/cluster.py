"""A small cluster on 127.0.0.1, the way README "From one machine to a cluster" builds one: a Prefect server, an
MLflow tracking server (`s3ft tracking-server`, what `make ui` serves), the work pools and deployments of
prefect.yaml (`make deploy`), and process workers that each run in a checkout of their own (`make worker`), all
sharing one store (`store.uri`)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from s3ft_cli import ROOT, free_port, start_server, stop_server

BIN = Path(sys.executable).parent
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def pools() -> list[str]:
    """The work pools prefect.yaml's deployments name (`make deploy` creates them)."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return sorted({d["work_pool"]["name"] for d in spec["deployments"]})


def checkout(dest: Path) -> Path:
    """Another machine's checkout of this repository (the working tree, without venv, git or outputs)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "test-artifacts", "__pycache__",
                                                              ".pytest_cache", "*.egg-info", "mlartifacts"))
    return dest


def tracking_server(root: Path) -> tuple[str, subprocess.Popen]:
    """`s3ft tracking-server --root ROOT` on a free port: (its URL, the process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(BIN / "s3ft"), "tracking-server", "--root", str(root), "--port", str(port)]
    return url, start_server(argv, dict(os.environ), f"{url}/health", root.parent / f"{root.name}-server.log")


def deploy_all(env: dict) -> None:
    """`make deploy`: every pool, then `prefect deploy --all` (without S3FT_CHECKOUT: runs read it when they start)."""
    env = {k: v for k, v in env.items() if k != "S3FT_CHECKOUT"}
    for args in ([["work-pool", "create", p, "--type", "process", "--overwrite"] for p in pools()]
                 + [["--no-prompt", "deploy", "--all"]]):
        proc = subprocess.run([str(BIN / "prefect"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def run_on_worker(client: httpx.Client, deployment: str, params: dict, home: Path, env: dict,
                  log: Path, timeout: float = 1200) -> dict:
    """Start `make worker`'s command in checkout `home`, run the deployment once through the API, stop the worker;
    returns the finished flow run (its state COMPLETED, else the worker's log in the assertion)."""
    env = dict(env, S3FT_CHECKOUT=str(home))
    with log.open("w") as out:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "s3ft-local"], cwd=home, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        dep = client.get(f"/deployments/name/s3ft-experiment/{deployment}").raise_for_status().json()
        run = client.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": params}).raise_for_status()
        run_id = run.json()["id"]
        deadline = time.monotonic() + timeout
        while (run := client.get(f"/flow_runs/{run_id}").json())["state"]["type"] not in FINAL:
            assert time.monotonic() < deadline, "the deployment's flow run did not finish"
            time.sleep(2)
        assert run["state"]["type"] == "COMPLETED", log.read_text()[-5000:]
        return run
    finally:
        stop_server(worker)
