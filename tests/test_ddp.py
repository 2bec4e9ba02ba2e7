"""Multi-process training that runs: `training.launcher: accelerate` with two processes on this CPU machine (DDP
over gloo through accelerate's torchrun launcher), one adapter written by rank 0, and a resume after a kill."""
import json
import math
import subprocess
import sys
import time

import psutil
import pytest

from s3ft_cli import ROOT
from tasks.core.records import Target, write_jsonl
from tasks.core.settings import LoraSettings, TrainingSettings
from tasks.engines.lora import last_complete_checkpoint, train_with_accelerate

DDP = ["--multi_gpu", "--num_processes", "2"]  # accelerate's torchrun launcher: gloo on a machine without GPUs


def _targets(n: int) -> list[Target]:
    return [Target(example_id=str(i), source="gold", messages=[
        {"role": "user", "content": f"What is {i}+{i}?"},
        {"role": "assistant", "content": f"{i}+{i} = {2 * i}. The answer is: {2 * i}"}]) for i in range(n)]


@pytest.fixture
def job(tiny_model_dir, tmp_path):
    targets = write_jsonl(tmp_path / "targets.jsonl", _targets(24))
    return targets, tiny_model_dir, tmp_path / "out"


@pytest.mark.slow
def test_two_processes_train_one_adapter_with_the_world_batch(job):
    targets, model, out = job
    settings = TrainingSettings(launcher="accelerate", accelerate_args=DDP, batch_size=2, grad_accum=2, epochs=1,
                                learning_rate=1e-2, save_steps=None)
    stats = train_with_accelerate(targets, model, LoraSettings(), settings, out)
    assert stats["world_size"] == 2  # two ranks really trained (accelerate's `--cpu` path would run one)
    # the effective batch is batch_size x grad_accum x world: 24 examples / (2 x 2 x 2) = 3 optimizer steps
    assert stats["steps"] == math.ceil(24 / (2 * 2 * 2)) == 3
    assert len(stats["loss_history"]) == 3 and stats["examples"] == 24
    # rank 0 alone wrote: one adapter, one log, no half-written or per-rank leftovers
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "train_log.json"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "train_log.json").read_text()) == stats


# The stage's side of training (what a flow run's process does), in a process of its own to be killed.
STAGE = """import sys
from pathlib import Path
from tasks.core.settings import LoraSettings, TrainingSettings
from tasks.engines.lora import train_with_accelerate
train_with_accelerate(Path(sys.argv[1]), Path(sys.argv[2]), LoraSettings(),
                      TrainingSettings.model_validate_json(sys.argv[3]), Path(sys.argv[4]))
"""


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_from_its_checkpoint(job):
    targets, model, out = job
    settings = TrainingSettings(launcher="accelerate", accelerate_args=DDP, batch_size=1, max_steps=30,
                                learning_rate=1e-2, save_steps=1)
    stage = subprocess.Popen([sys.executable, "-c", STAGE, str(targets), str(model), settings.model_dump_json(),
                              str(out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while last_complete_checkpoint(out / "checkpoints", world_size=2) is None:
        assert stage.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(0.05)
    family = psutil.Process(stage.pid).children(recursive=True)  # the launcher and the ranks it started
    assert len([p for p in family if "tasks.engines.lora" in " ".join(p.cmdline())]) == 3
    stage.kill()  # SIGKILL to the stage's process alone, as the OOM killer would: the launcher and ranks follow
    stage.wait()
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, "the launcher or a rank outlived the killed run"
    assert not (out / "adapter").exists() and not (out / "train_log.json").exists()
    killed_at = int(last_complete_checkpoint(out / "checkpoints", world_size=2).name.split("-")[-1])
    assert 1 <= killed_at < 30

    stats = train_with_accelerate(targets, model, LoraSettings(), settings, out)
    assert stats["world_size"] == 2 and stats["steps"] == 30
    assert stats["resumed_from_step"] >= killed_at  # it went on from the checkpoint, not from step 0
    assert len(stats["loss_history"]) == 30  # the steps before the kill come back from the checkpoint's state
    assert sorted(p.name for p in out.iterdir()) == ["adapter", "train_log.json"]
