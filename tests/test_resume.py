"""Crash and resume: SIGKILL the whole `s3ft run` process group during generation, training and benchmarking,
run the same command again, and the experiment completes. Stages that finished before the kill are cache
hits; generation resumes from its last finished shard; training from its last checkpoint; the killed
attempt's MLflow runs are marked FAILED; no JSONL file is ever half-written."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from s3ft_cli import ROOT, TINY_RANDOM, command, recomputed, run_s3ft, summary_of


def _run_and_kill(out: Path, model: Path, extra: list[str], ready, server, timeout: float = 300) -> list[Path]:
    """Start `s3ft run`, SIGKILL its process group once `ready(out)` returns files; returns those files."""
    args, env = command(out, model, extra, server=server)
    with open(out.parent / f"{out.name}-killed.log", "w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not (found := ready(out)):
                assert proc.poll() is None, f"finished before the kill point: {(out.parent / f'{out.name}-killed.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, "kill point never reached"
                time.sleep(0.02)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return found


def _no_half_written_jsonl(out: Path) -> None:
    for path in out.rglob("*.jsonl"):
        if not path.name.startswith("."):  # dot-files are temp files that were never renamed into place
            for n, line in enumerate(path.read_text().rstrip("\n").split("\n"), 1):  # not splitlines: U+2028
                try:
                    json.loads(line)
                except ValueError as err:
                    raise AssertionError(f"{path}:{n} is half-written: {err}") from None


def _mlflow_runs(out: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    ids = [e.experiment_id for e in mlflow.MlflowClient().search_experiments()]
    return mlflow.search_runs(ids, output_format="list")


def _killed_attempt_closed(out: Path, resumed: dict, log: str) -> None:
    runs = _mlflow_runs(out)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.status == "FAILED"]
    parents = [r for r in killed if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.run_id != resumed["mlflow_run_id"]
    assert all(r.data.tags.get("s3ft.failure") for r in killed)
    assert "marked Prefect flow run" in log and "Crashed" in log


def _shards(out: Path) -> list[Path]:
    return sorted(out.glob("store/generate/*/shards/shard-*.jsonl"))


@pytest.mark.slow
def test_kill_during_generation_resumes_from_the_last_shard(tmp_path, tiny_model_dir, mirror, prefect_server):
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["data.train_size=16", "generation.shard_size=1", "generation.max_new_tokens=48"]
    written = _run_and_kill(out, tiny_model_dir, extra, _shards, prefect_server)
    _no_half_written_jsonl(out)
    kept = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in _shards(out)}
    assert 1 <= len(kept) < 16
    proc = run_s3ft(out, tiny_model_dir, extra, server=prefect_server)
    summary = summary_of(proc)
    stages = {s["stage"]: s for s in summary["stages"]}
    assert {"prepare_model", "load_examples:train", "load_examples:test"}.isdisjoint(recomputed(summary))
    assert "generate:train" in recomputed(summary)
    assert stages["generate:train"]["counts"]["resumed"] == len(kept) and stages["generate:train"]["counts"]["generations"] == 16
    assert summary["generations_performed"] == 16 - len(kept) + sum(  # the rest of the experiment's answers
        s["counts"]["generations"] for s in summary["stages"] if s["stage"].startswith("generate:") and s["stage"] != "generate:train")
    for p, stat in kept.items():  # finished shards were read back, not regenerated
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stat
    _killed_attempt_closed(out, summary, proc.stderr)
    _no_half_written_jsonl(out)


def _checkpoints(out: Path) -> list[Path]:
    return sorted(out.glob("store/train/*/checkpoints/checkpoint-*/trainer_state.json"))


@pytest.mark.slow
def test_kill_during_training_resumes_from_the_last_checkpoint(tmp_path, tiny_model_dir, mirror, prefect_server):
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["training.max_steps=40", "training.save_steps=2"]
    _run_and_kill(out, tiny_model_dir, extra, _checkpoints, prefect_server)
    _no_half_written_jsonl(out)
    before_kill = {s["stage"] for s in json.loads(next(out.glob("tiny/*/stages.json")).read_text())} \
        if list(out.glob("tiny/*/stages.json")) else set()
    proc = run_s3ft(out, tiny_model_dir, extra, server=prefect_server)
    summary = summary_of(proc)
    # Everything before training came from the cache; training resumed from a checkpoint of the killed attempt.
    # (drift_reference runs with the first trained arm's drift, which the kill came before.)
    assert recomputed(summary) == {"train:s3ft", "merge:s3ft", "generate:test:s3ft", "judge:test:s3ft",
                                   "drift_reference", "drift:s3ft"}, recomputed(summary)
    train = next(s for s in summary["stages"] if s["stage"] == "train:s3ft")
    assert 2 <= train["counts"]["resumed_from_step"] < 40 and train["counts"]["steps"] == 40
    log = json.loads((Path(train["path"]).parent / "train_log.json").read_text())
    assert len(log["loss_history"]) == 40  # the killed attempt's logged steps came back with the checkpoint
    assert not (Path(train["path"]).parent / "checkpoints").exists()
    _killed_attempt_closed(out, summary, proc.stderr)
    assert before_kill == set()  # the killed attempt never got to write its stage list


def _benchmark_started(out: Path) -> list[Path]:
    """Inside the stage, before scoring: its lm-eval task files are written, the model not yet loaded (a
    fixed sleep after the stage folder appeared overshot a 2-item benchmark on a fast machine)."""
    return sorted(out.glob("store/benchmark/*/task_yamls/*"))


@pytest.mark.slow
def test_kill_during_benchmarking_recomputes_only_the_benchmark(tmp_path, tiny_model_dir, mirror, prefect_server):
    out = tmp_path / "out"
    extra = TINY_RANDOM + ["arms=[base]", "benchmarks.names=[truthfulqa_mc1]", "benchmarks.truthfulqa_limit=2"]
    _run_and_kill(out, tiny_model_dir, extra, _benchmark_started, prefect_server)
    assert not list(out.glob("store/benchmark/*/metrics.json"))  # killed inside the stage
    _no_half_written_jsonl(out)
    proc = run_s3ft(out, tiny_model_dir, extra, server=prefect_server)
    summary = summary_of(proc)
    assert recomputed(summary) == {"benchmark:base"}  # everything before it finished and came from the cache
    assert summary["results"][0]["general"]["truthfulqa_mc1/acc"] >= 0
    _killed_attempt_closed(out, summary, proc.stderr)
