"""Ctrl-C (SIGINT to the process group) and SIGTERM (to the process, as `kill` or a scheduler sends it) during a
long stage: one `s3ft: error:` line and no traceback, every child process gone (the vLLM engine core and the
temporary Prefect server), no MLflow run left RUNNING (the parent ends KILLED), and the re-run resumes."""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from s3ft_cli import ROOT, TINY_RANDOM, command, recomputed, run_s3ft, summary_of
from test_resume import _benchmark_started, _checkpoints, _mlflow_runs, _shards


def _deaf_to_ctrl_c() -> None:
    """What a parent may hand down (a script's background job, a test runner a library touched): SIGINT ignored
    and blocked. Both survive exec, and Python then leaves Ctrl-C ignored unless s3ft restores it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def _start(out: Path, model: Path, extra: list[str], env_extra: dict[str, str], deaf: bool = False) -> subprocess.Popen:
    args, env = command(out, model, extra)  # no server: the run starts its own temporary Prefect server
    env.update(env_extra)
    log = open(out.parent / f"{out.name}.log", "w")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_deaf_to_ctrl_c if deaf else None)


def _interrupt(proc: subprocess.Popen, out: Path, ready, signum: int, to_group: bool, timeout: float = 600) -> str:
    """Send `signum` once `ready(out)` holds; returns stderr after the process has ended."""
    deadline = time.monotonic() + timeout
    while not ready(out):
        assert proc.poll() is None, f"ended before the signal: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "signal point never reached"
        time.sleep(0.05)
    (os.killpg if to_group else os.kill)(proc.pid, signum)
    _, stderr = proc.communicate(timeout=180)
    return stderr


def _group_gone(pgid: int, within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    os.killpg(pgid, signal.SIGKILL)
    return False


def _port_closed(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _ended_cleanly(proc: subprocess.Popen, stderr: str, out: Path, name: str, code: int) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("s3ft: error:")]
    assert proc.returncode == code, stderr[-3000:]
    assert len(errors) == 1 and f"interrupted by {name}" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert _group_gone(proc.pid), "a child process (the vLLM engine core) outlived the run"
    printed = stderr + (out.parent / f"{out.name}.log").read_text()
    port = int(re.search(r"temporary server on http://127.0.0.1:(\d+)", printed).group(1))
    assert _port_closed(port), "the temporary Prefect server outlived the run"
    runs = _mlflow_runs(out)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in parents] == ["KILLED"]
    assert "signal" in parents[0].data.tags["s3ft.failure"]


@pytest.mark.slow
def test_sigterm_during_vllm_generation(tmp_path, bundled_model_dir, mirror, prefect_server):
    """The multiprocess vLLM engine (its engine core is a child process, as with tensor parallelism)."""
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["generation.backend=vllm", "data.train_size=12", "generation.shard_size=2",
                           "generation.max_new_tokens=64"]
    proc = _start(out, bundled_model_dir, extra, {"VLLM_ENABLE_V1_MULTIPROCESSING": "1"})
    stderr = _interrupt(proc, out, _shards, signal.SIGTERM, to_group=False)
    _ended_cleanly(proc, stderr, out, "SIGTERM", 143)
    kept = len(_shards(out))
    summary = summary_of(run_s3ft(out, bundled_model_dir, extra, server=prefect_server))
    stages = {s["stage"]: s for s in summary["stages"]}
    assert {"prepare_model", "load_examples:train"}.isdisjoint(recomputed(summary))
    assert kept >= 1 and stages["generate:train"]["counts"]["resumed"] == 2 * kept  # shard_size prompts a shard


@pytest.mark.slow
def test_ctrl_c_during_training(tmp_path, tiny_model_dir, mirror, prefect_server):
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["training.max_steps=60", "training.save_steps=2"]
    proc = _start(out, tiny_model_dir, extra, {}, deaf=True)  # Ctrl-C works even where the parent ignored it
    stderr = _interrupt(proc, out, _checkpoints, signal.SIGINT, to_group=True)
    _ended_cleanly(proc, stderr, out, "SIGINT", 130)
    summary = summary_of(run_s3ft(out, tiny_model_dir, extra, server=prefect_server))
    assert "generate:train" not in recomputed(summary)
    train = next(s for s in summary["stages"] if s["stage"] == "train:s3ft")
    assert not train["cached"] and 2 <= train["counts"]["resumed_from_step"] < 60


@pytest.mark.slow
def test_sigterm_during_benchmarking(tmp_path, tiny_model_dir, mirror, prefect_server):
    """lm-eval inside the stage; the re-run recomputes only the benchmark."""
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["arms=[base]", "benchmarks.names=[truthfulqa_mc1]", "benchmarks.truthfulqa_limit=2"]
    proc = _start(out, tiny_model_dir, extra, {})
    stderr = _interrupt(proc, out, _benchmark_started, signal.SIGTERM, to_group=False)
    _ended_cleanly(proc, stderr, out, "SIGTERM", 143)
    summary = summary_of(run_s3ft(out, tiny_model_dir, extra, server=prefect_server))
    assert recomputed(summary) == {"benchmark:base"}
