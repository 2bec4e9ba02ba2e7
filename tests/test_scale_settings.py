"""The settings of scale-out: where the shared store is (`store.uri`), and parallelism a machine cannot serve
refused before any work with the field and the fix (tasks/engines/devices.py)."""
import subprocess
import sys

import pytest

from s3ft_cli import ROOT
from tasks.core.config import ExperimentConfig
from tasks.core.errors import ConfigError
from tasks.core.settings import StoreSettings
from tasks.engines import devices
from tasks.engines.devices import parallelism_problems


def test_the_store_is_output_dir_unless_store_uri_or_its_env_names_one(tmp_path, monkeypatch):
    monkeypatch.delenv("S3FT_STORE_URI", raising=False)
    cfg = ExperimentConfig(output_dir=str(tmp_path / "out"))
    assert cfg.store_path() == tmp_path / "out" / "store" and cfg.results_path() == tmp_path / "out" / "prefect-results"
    shared = ExperimentConfig(output_dir=str(tmp_path / "out"), store={"uri": (tmp_path / "nfs").as_uri()})
    assert (shared.store_path(), shared.results_path(), shared.locks_path()) == (
        tmp_path / "nfs" / "store", tmp_path / "nfs" / "prefect-results", tmp_path / "nfs" / "locks")
    assert shared.output_path() == tmp_path / "out"  # run folders stay where the worker runs
    monkeypatch.setenv("S3FT_STORE_URI", str(tmp_path / "env"))
    assert cfg.store_path() == tmp_path / "env" / "store" and shared.store_path() == tmp_path / "nfs" / "store"
    monkeypatch.setenv("S3FT_STORE_URI", "s3://bucket/store")
    with pytest.raises(ConfigError, match="S3FT_STORE_URI.*s3://.*Fix: mount it"):
        cfg.store_path()


def test_store_uri_is_a_location_never_part_of_a_key():
    assert StoreSettings(uri="/mnt/shared").key_dump() == StoreSettings().key_dump() == {}


@pytest.mark.parametrize("uri", ["s3://bucket/s3ft", "gs://bucket/s3ft", "file://otherhost/srv/store"])
def test_a_remote_store_uri_stops_with_the_mount_fix(uri, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(ROOT / "configs/tiny.yaml"), "--set",
                           f"store.uri={uri}", "--set", f"output_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("s3ft: error:") == 1, proc.stderr
    assert "store.uri" in proc.stderr and "Fix: mount it on every worker" in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_impossible_parallelism_on_this_cpu_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no accelerate default config
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    monkeypatch.setattr(devices, "numa_nodes", lambda: 1)
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    assert parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu", "--num_processes", "2"]) == []
    assert parallelism_problems(2, 2, False, "local", []) == []  # transformers generation: vLLM's knobs are unused
    (tp,) = parallelism_problems(2, 1, True, "local", [])
    assert tp.startswith("vllm.tensor_parallel_size: 2") and "Fix: set vllm.tensor_parallel_size to at most 1" in tp
    (dp,) = parallelism_problems(1, 2, True, "local", [])
    assert dp.startswith("vllm.data_parallel_size: 2") and "Fix: set it to 1" in dp
    (cpu,) = parallelism_problems(1, 1, True, "accelerate", ["--cpu", "--num_processes", "2"])
    assert "starts ONE process" in cpu and '["--multi_gpu", "--num_processes", "2"]' in cpu
    (cores,) = parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu", "--num_processes=3"])
    assert cores.startswith("training.accelerate_args: 3 processes") and "at most 2" in cores
    assert parallelism_problems(1, 1, True, "accelerate", []) == []  # one process: s3ft passes --num_processes 1
    (multi,) = parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu"])
    assert "--multi_gpu with 1 process(es). Fix: add --num_processes 2 or more" in multi
    (dashed,) = parallelism_problems(1, 1, True, "accelerate", ["--multi-gpu", "--num-processes", "3"])
    assert "3 processes" in dashed
    config = tmp_path / "accelerate.yaml"
    config.write_text("distributed_type: FSDP\nnum_processes: 2\n")
    (fsdp,) = parallelism_problems(1, 1, True, "accelerate", ["--config_file", str(config), "--num_processes", "2"])
    assert "FSDP is not supported yet" in fsdp and "--multi_gpu" in fsdp
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\n")
    (unnamed,) = parallelism_problems(1, 1, True, "accelerate", ["--config_file", str(config)])
    assert "name the number of processes next to --config_file" in unnamed  # the key never reads the file
    (deepspeed,) = parallelism_problems(1, 1, True, "accelerate", ["--use_deepspeed", "--num_processes", "2"])
    assert "DeepSpeed is not supported yet" in deepspeed
    config.write_text("distributed_type: [unclosed\n")
    (bad,) = parallelism_problems(1, 1, True, "accelerate", ["--config_file", str(config), "--num_processes", "2"])
    assert bad.startswith("training.accelerate_args: cannot read its --config_file")
    (missing,) = parallelism_problems(1, 1, True, "accelerate", ["--config_file", str(tmp_path / "none.yaml")])
    assert missing.startswith("training.accelerate_args: cannot read its --config_file")


def test_accelerate_arguments_that_would_train_outside_the_key_are_refused(monkeypatch, tmp_path):
    """The training key holds accelerate_args and training.bf16: what accelerate would decide elsewhere (the
    process count by the machine, the precision or FSDP by its default config file) is refused or pinned."""
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    monkeypatch.setattr(devices, "cpu_cores", lambda: 2)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (plain,) = parallelism_problems(1, 1, False, "accelerate", ["--num_processes", "2"])
    assert "--num_processes 2 without --multi_gpu" in plain and 'Fix: add "--multi_gpu"' in plain
    (zero,) = parallelism_problems(1, 1, False, "accelerate", ["--multi_gpu", "--num_processes", "0"])
    assert zero == "training.accelerate_args: --num_processes 0. Fix: name 1 or more processes"
    (precision,) = parallelism_problems(1, 1, False, "accelerate", ["--mixed_precision=fp16"])
    assert "--mixed_precision is set by s3ft" in precision and "training.bf16" in precision
    default = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    assert devices.default_config_file() == default
    default.parent.mkdir(parents=True)
    default.write_text("distributed_type: FSDP\nmixed_precision: fp16\n")
    (fsdp,) = parallelism_problems(1, 1, False, "accelerate", ["--num_processes", "2"])
    assert f"FSDP (accelerate's default config {default}" in fsdp and "move that default config away" in fsdp
    # a mode flag wins over the file's distributed_type, as in accelerate
    assert parallelism_problems(1, 1, False, "accelerate", ["--multi_gpu", "--num_processes", "2"]) == []
    assert parallelism_problems(1, 1, False, "accelerate", ["--cpu"]) == []  # accelerate skips the file with --cpu
    default.write_text("distributed_type: MULTI_GPU\nmixed_precision: fp16\n")
    assert parallelism_problems(1, 1, False, "accelerate", []) == []
    assert devices.launch_args([], bf16=False) == ["--num_processes", "1", "--mixed_precision", "no",
                                                   "--dynamo_backend", "no", "--num_machines", "1"]  # not the file's
    assert devices.launch_args(["--multi_gpu", "--num_processes=2"], bf16=True)[-6:-2] == [
        "--mixed_precision", "bf16", "--dynamo_backend", "no"]
    (machines,) = parallelism_problems(1, 1, False, "accelerate", ["--num_machines", "2"])
    assert "--num_machines is set by s3ft" in machines and "one machine per training" in machines
    default.write_text("distributed_type: MULTI_GPU\nparallelism_config: {parallelism_config_dp_shard_size: 2}\n")
    (sharding,) = parallelism_problems(1, 1, False, "accelerate", ["--multi_gpu", "--num_processes", "2"])
    assert "sets parallelism_config" in sharding and str(default) in sharding
    default.write_text("[a list]\n")
    (unreadable,) = parallelism_problems(1, 1, False, "accelerate", [])
    assert unreadable.startswith(f"training.accelerate_args: {default} is not a YAML mapping")


def test_the_training_key_holds_the_process_count_not_the_spelling():
    from tasks.core.settings import TrainingSettings

    def key(args: list[str]) -> dict:
        return TrainingSettings(launcher="accelerate", accelerate_args=args).key_dump()

    two = key(["--multi_gpu", "--num_processes", "2"])
    assert two["accelerate_args"] == ["--multi_gpu", "--num_processes", "2"]
    assert key(["--num_processes=2", "--multi-gpu", "--main_process_port", "29501", "--config_file", "/a.yaml"]) == two
    assert key(["--multi_gpu", "--num_processes", "4"]) != two  # the effective batch
    assert key(["--multi_gpu", "--num_processes", "2", "--num-processes", "4"]) == key(
        ["--multi_gpu", "--num_processes", "4"])  # the last one counts, as in accelerate's argparse
    assert key([]) == key(["--num_processes", "1"]) == TrainingSettings().key_dump()  # one process: the local adapter
    assert TrainingSettings().key_dump()["accelerate_args"] == []  # the default key as before


def test_impossible_parallelism_on_a_four_gpu_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(devices, "visible_gpus", lambda: 4)
    assert parallelism_problems(4, 1, True, "accelerate", ["--multi_gpu", "--num_processes", "4"]) == []
    (tp,) = parallelism_problems(8, 1, True, "local", [])
    assert "this machine has 4 GPU(s)" in tp and "at most 4" in tp
    (procs,) = parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu", "--num_processes", "8"])
    assert "8 processes, but 4 GPU(s) are visible" in procs
    (ids,) = parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu", "--num_processes", "4", "--gpu_ids", "0,1"])
    assert "4 processes, but gpu_ids" in ids and "names 2 GPU(s)" in ids
    (word,) = parallelism_problems(1, 1, True, "accelerate", ["--multi_gpu", "--num_processes", "four"])
    assert word.startswith("training.accelerate_args: --num_processes 'four' is not a whole number. Fix:")


def test_the_cli_refuses_impossible_parallelism_before_any_work(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", str(ROOT / "configs/tiny.yaml"), "--set",
                           "vllm.tensor_parallel_size=64", "--set", "generation.backend=vllm", "--set",
                           f"output_dir={tmp_path}"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.count("s3ft: error:") == 1, proc.stderr
    assert "vllm.tensor_parallel_size: 64" in proc.stderr
    assert not any(tmp_path.iterdir())  # no store, no MLflow database, no run folder
