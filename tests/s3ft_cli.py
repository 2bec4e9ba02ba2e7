"""Running the real `s3ft` command line from tests: a subprocess with its own Prefect home and store."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The whole experiment on a tiny random llama (conftest `tiny_model_dir`) with transformers generation:
# every stage, real Prefect, MLflow, PEFT and judges, in seconds per stage.
TINY_RANDOM = ["data.train_size=4", "data.test_size=4", "generation.backend=hf", "generation.max_new_tokens=16",
               "paraphrase.max_new_tokens=16", "evaluation.max_new_tokens=16", "paraphrase.min_length_ratio=0",
               "judge.reject_truncated=false", "training.max_steps=2", "training.batch_size=2",
               "benchmarks.names=[]", "arms=[base,s3ft]", "diagnostics.familiarity=false",
               "drift.prompts=4", "drift.max_new_tokens=8"]


def command(out: Path, model: Path, extra: list[str], config: str = "configs/tiny.yaml",
            server: tuple[str, Path] | None = None) -> tuple[list[str], dict]:
    """argv and environment of `s3ft run`; `server` = (API URL, PREFECT_HOME) of a running Prefect server,
    else the command starts its own throw-away server."""
    env = dict(os.environ, PREFECT_HOME=str(out.parent / f"{out.name}-prefect-home"), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    if server is not None:
        env.update(PREFECT_API_URL=server[0], PREFECT_HOME=str(server[1]))
    args = [sys.executable, "-m", "flows.cli", "run", str(ROOT / config), "--set", f"output_dir={out}",
            "--set", f"model.ref={model}"]
    for item in extra:
        args += ["--set", item]
    return args, env


def run_s3ft(out: Path, model: Path, extra: list[str], config: str = "configs/tiny.yaml",
             server: tuple[str, Path] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    args, env = command(out, model, extra, config, server)
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("summary: "))
    return json.loads(Path(line.removeprefix("summary: ")).read_text())


def recomputed(summary: dict) -> set[str]:
    return {s["stage"] for s in summary["stages"] if not s["cached"]}


def snapshot(out: Path, folders: tuple[str, ...] = ("store", "prefect-results")) -> dict[str, str]:
    """sha256 of every file a run computed (stage store and Prefect cache records)."""
    files: dict[str, str] = {}
    for folder in folders:
        for p in sorted((out / folder).rglob("*")):
            if p.is_file():
                files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(argv: list[str], env: dict, health: str, log: Path, timeout: float = 120) -> subprocess.Popen:
    """Start a server process (its own process group) and wait until `health` answers 200."""
    import time

    import httpx

    with log.open("a") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(health, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def stop_server(server: subprocess.Popen, sig: int | None = None) -> None:
    """End a server's whole process group (SIGTERM, then SIGKILL after 30 s; or `sig` at once)."""
    import signal

    try:
        os.killpg(server.pid, sig or signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    except ProcessLookupError:
        pass


def prefect_server_argv(port: int) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def prefect_env(home: Path, api: str) -> dict:
    return dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=api,
                PREFECT_UI_API_URL=api)  # the UI's pages call this URL (default: port 4200)
