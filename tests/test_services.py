"""The servers a run talks to going down (flows/services.py): before the run, one line and nothing computed; in
the middle, one line, the finished stages cached, and the re-run after the server is back resumes."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flows.services import lost_service, tracking_server_argv
from s3ft_cli import (ROOT, TINY_RANDOM, command, free_port, prefect_env, prefect_server_argv, recomputed, run_s3ft,
                      start_server, stop_server, summary_of)
from test_resume import _shards


def _one_error_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("s3ft: error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def test_lost_connections_are_named_and_other_errors_are_not():
    import httpx
    import requests

    api = "http://127.0.0.1:4200/api"
    os.environ["PREFECT_API_URL"] = api
    try:
        err = httpx.ConnectError("refused", request=httpx.Request("POST", f"{api}/task_runs/"))
        try:
            raise RuntimeError("state update failed") from err
        except RuntimeError as wrapped:
            assert "Prefect API http://127.0.0.1:4200/api" in str(lost_service(wrapped))
        other = httpx.ConnectError("refused", request=httpx.Request("GET", "https://huggingface.co/api/x"))
        assert lost_service(other) is None  # the hub is not the Prefect API
    finally:
        del os.environ["PREFECT_API_URL"]
    import mlflow

    mlflow.set_tracking_uri("http://127.0.0.1:5999")
    try:
        err = requests.ConnectionError("refused", request=requests.Request("POST", "http://127.0.0.1:5999/api/2.0/x"))
        assert "MLflow tracking server http://127.0.0.1:5999" in str(lost_service(err))
        assert lost_service(ValueError("a bug")) is None
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
@pytest.mark.parametrize("setting, words", [
    ("tracking.tracking_uri=http://127.0.0.1:{port}", ("MLflow tracking server", "is not answering", "Fix:")),
    ("PREFECT_API_URL=http://127.0.0.1:{port}/api", ("Prefect API", "is not answering", "PREFECT_API_URL"))])
def test_a_server_down_before_the_run_is_one_line_and_no_work(tmp_path, tiny_model_dir, mirror, setting, words):
    out = tmp_path / "out"
    setting = setting.format(port=free_port())  # nothing listens there
    args, env = command(out, tiny_model_dir, TINY_RANDOM)
    if setting.startswith("PREFECT_API_URL="):
        env["PREFECT_API_URL"] = setting.partition("=")[2]
    else:
        args += ["--set", setting]
    start = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    _one_error_line(proc, *words)
    assert time.monotonic() - start < 120
    assert not (out / "store").exists()


def _run_until(args: list[str], env: dict, out: Path, ready) -> subprocess.Popen:
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ready(out):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_prefect_api_lost_mid_run_then_resumed(tmp_path, tiny_model_dir, mirror):
    out, home, port = tmp_path / "out", tmp_path / "prefect-home", free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = prefect_env(home, api)
    server = start_server(prefect_server_argv(port), server_env, f"{api}/health", tmp_path / "server.log")
    extra = TINY_RANDOM + ["data.train_size=16", "generation.shard_size=1", "generation.max_new_tokens=48"]
    args, env = command(out, tiny_model_dir, extra, server=(api, home))
    env["PREFECT_CLIENT_MAX_RETRIES"] = "1"  # the default 5, with backoff, takes minutes to give up
    try:
        proc = _run_until(args, env, out, _shards)
        stop_server(server, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
        _one_error_line(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), "Prefect API", api)
        server = start_server(prefect_server_argv(port), server_env, f"{api}/health", tmp_path / "server.log")
        summary = summary_of(run_s3ft(out, tiny_model_dir, extra, server=(api, home)))
        assert {"prepare_model", "load_examples:train"}.isdisjoint(recomputed(summary))
    finally:
        stop_server(server)


@pytest.mark.slow
def test_mlflow_server_lost_mid_run_then_resumed(tmp_path, tiny_model_dir, mirror, prefect_server):
    out, port = tmp_path / "out", free_port()
    uri = f"http://127.0.0.1:{port}"
    mlflow_argv = tracking_server_argv(tmp_path, port)  # what `make ui` serves
    server_env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    server = start_server(mlflow_argv, server_env, f"{uri}/health", tmp_path / "mlflow.log")
    extra = TINY_RANDOM + [f"tracking.tracking_uri={uri}", "data.train_size=16", "generation.shard_size=1",
                           "generation.max_new_tokens=48"]
    args, env = command(out, tiny_model_dir, extra, server=prefect_server)
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1")
    try:
        proc = _run_until(args, env, out, _shards)
        stop_server(server, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
        _one_error_line(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), "MLflow", uri)
        server = start_server(mlflow_argv, server_env, f"{uri}/health", tmp_path / "mlflow.log")
        summary = summary_of(run_s3ft(out, tiny_model_dir, extra, server=prefect_server))
        assert "generate:train" not in recomputed(summary)  # finished before the MLflow call that failed
    finally:
        stop_server(server)


@pytest.mark.slow
def test_hub_unreachable_is_one_line_then_the_mirror_resumes(tmp_path, tiny_model_dir, mirror, prefect_server):
    """No mirror and a hub that refuses connections (a real socket, nothing stubbed): one line naming the
    setting; the model prepared before the data load stays cached for the re-run with the mirror."""
    out = tmp_path / "out"
    args, env = command(out, tiny_model_dir, TINY_RANDOM, server=prefect_server)
    env.update(S3FT_DATA_MIRROR="", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_DATASETS_OFFLINE="0",
               HF_HUB_OFFLINE="0")
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    _one_error_line(proc, "data.mirror", "S3FT_DATA_MIRROR")
    args, env = command(out, tiny_model_dir, TINY_RANDOM, server=prefect_server)
    env["S3FT_DATA_MIRROR"] = str(mirror)
    resumed = summary_of(subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900))
    assert "prepare_model" not in recomputed(resumed)
