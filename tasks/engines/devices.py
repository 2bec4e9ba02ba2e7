"""The devices this machine offers and the parallelism a config asks of them, compared before any work.

vLLM splits one engine over `vllm.tensor_parallel_size` GPUs; `accelerate launch` starts one training process per
device. Asking for more than the machine has fails minutes later inside those engines (a hang, a CUDA error, or,
for accelerate's `--cpu`, silently one process): here it is one line naming the field and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tasks.core.settings import command_flag


def visible_gpus() -> int:
    """CUDA devices this process may use (CUDA_VISIBLE_DEVICES applied); 0 on a CPU-only machine."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def numa_nodes() -> int:
    """vLLM's CPU backend runs one tensor-parallel rank per NUMA node."""
    return max(1, len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))))


UNSUPPORTED = {"FSDP": "FSDP", "DEEPSPEED": "DeepSpeed", "MEGATRON_LM": "Megatron-LM"}


def default_config_file() -> Path:
    """The config `accelerate launch` applies when none is named (written by `accelerate config`)."""
    home = os.environ.get("HF_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"))
    return Path(home).expanduser() / "accelerate" / "default_config.yaml"


def accelerate_launch(args: list[str]) -> dict[str, Any]:
    """What `accelerate launch ARGS` will start: processes (None: not named), on CPU or not, the sharded engine it
    asks for (FSDP, DeepSpeed), if any, and the config file it reads: the named one, else accelerate's default
    file where it exists (accelerate reads it unless `--cpu` is given)."""
    import yaml

    config: dict[str, Any] = {}
    path = command_flag(args, "--config_file")
    read = Path(path).expanduser() if path is not None else default_config_file()
    if path is not None or ("--cpu" not in args and read.is_file()):
        config = yaml.safe_load(read.read_text()) or {}
        if not isinstance(config, dict):
            raise ValueError(f"{read} is not a YAML mapping")
    n = command_flag(args, "--num_processes")
    cpu = "--cpu" in args or bool(config.get("use_cpu"))
    flags = {"--use_fsdp": "FSDP", "--use-fsdp": "FSDP", "--use_deepspeed": "DEEPSPEED",
             "--use-deepspeed": "DEEPSPEED", "--use_megatron_lm": "MEGATRON_LM"}
    sharded = next((flags[a] for a in args if a in flags), None) or (
        config.get("distributed_type") if config.get("distributed_type") in UNSUPPORTED else None)
    return {"processes": int(n) if n is not None else None, "cpu": cpu, "sharded": sharded,
            "config_file": path is not None, "config_read": str(read) if config else None,
            "multi": bool({"--multi_gpu", "--multi-gpu"} & set(args)),
            "pinned": sorted(a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in PINNED)}


PINNED = {"--mixed_precision", "--mixed-precision", "--dynamo_backend", "--dynamo-backend"}
"""accelerate options s3ft sets itself (launch_args): they change the adapter, and the key holds training.bf16."""


def launch_args(args: list[str], bf16: bool) -> list[str]:
    """`accelerate launch` arguments as s3ft passes them. One process unless the count is named, never accelerate's
    machine-dependent default (all GPUs), so that the training key, which holds the arguments, holds the count.
    The precision follows training.bf16 and torch.compile stays off, whatever a config file says (accelerate lets
    the command line override its config, and the Trainer reads the precision accelerate exports)."""
    count = [] if command_flag(args, "--num_processes") is not None else ["--num_processes", "1"]
    return [*args, *count, "--mixed_precision", "bf16" if bf16 else "no", "--dynamo_backend", "no"]


def parallelism_problems(tensor_parallel: int, data_parallel: int, uses_vllm: bool, launcher: str,
                         accelerate_args: list[str]) -> list[str]:
    """One line per request this machine cannot serve, each naming the field and the fix."""
    problems = []
    if uses_vllm and data_parallel > 1:
        problems.append(f"vllm.data_parallel_size: {data_parallel}, but vLLM's offline engine refuses data "
                        f"parallelism within one process (vLLM 0.32: 'LLM(data_parallel_size>1) is not supported for "
                        f"single-process usage'). Fix: set it to 1, and split a model over GPUs with "
                        f"vllm.tensor_parallel_size or run more workers")
    gpus = visible_gpus() if tensor_parallel > 1 or launcher == "accelerate" else 0
    if uses_vllm and tensor_parallel > 1:
        have, what = (gpus, "GPU(s)") if gpus else (numa_nodes(), "NUMA node(s), vLLM's CPU unit of tensor parallelism")
        if tensor_parallel > have:
            problems.append(f"vllm.tensor_parallel_size: {tensor_parallel}, but this machine has {have} {what}. Fix: "
                            f"set vllm.tensor_parallel_size to at most {have}, or run on a machine with "
                            f"{tensor_parallel} GPUs")
    if launcher == "accelerate":
        try:
            problems += _accelerate_problems(accelerate_launch(accelerate_args), gpus)
        except (OSError, ValueError, yaml_error()) as err:
            problems.append(f"training.accelerate_args: cannot read its --config_file or --num_processes ({err}). "
                            f"Fix: name an existing accelerate config file and a whole number of processes")
    return problems


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


def _accelerate_problems(launch: dict[str, Any], gpus: int) -> list[str]:
    n = launch["processes"]
    if launch["sharded"]:
        source = "" if launch["config_file"] or not launch["config_read"] else (
            f" (accelerate's default config {launch['config_read']}, which it reads when no --config_file is named)")
        return [f"training.accelerate_args: {UNSUPPORTED[launch['sharded']]}{source} is not supported yet: it shards "
                f"the LoRA weights, and the adapter is saved by rank 0 alone. Fix: use DDP, [\"--multi_gpu\", "
                f"\"--num_processes\", \"N\"] (a 7B model's LoRA fits on one GPU per process)"
                + (", and move that default config away or name another with --config_file" if source else "")]
    if n is None and launch["config_file"]:
        return ["training.accelerate_args: name the number of processes next to --config_file, e.g. "
                "[\"--config_file\", \"FILE\", \"--num_processes\", \"4\"]. It sets the effective batch "
                "(batch_size x grad_accum x processes), so it belongs in the training key, which never reads the file"]
    if launch["pinned"]:
        return [f"training.accelerate_args: {', '.join(launch['pinned'])} is set by s3ft (the precision follows "
                f"training.bf16, which the training key holds; torch.compile stays off). Fix: remove it, and set "
                f"training.bf16 for bf16 training"]
    n = 1 if n is None else n  # what launch_args passes: one process unless named
    if n < 1:
        return [f"training.accelerate_args: --num_processes {n}. Fix: name 1 or more processes"]
    if n > 1 and not launch["multi"] and not launch["cpu"]:
        return [f"training.accelerate_args: --num_processes {n} without --multi_gpu: accelerate then starts one "
                f"process on a machine without GPUs and {n} on one with several, under the same training key. "
                f"Fix: add \"--multi_gpu\" (DDP; over gloo on CPU)"]
    if launch["multi"] and n < 2:
        return [f"training.accelerate_args: --multi_gpu with {n} process(es). Fix: add --num_processes 2 or more "
                f"(one per GPU; on CPU, one per core)"]
    if launch["cpu"] and n > 1:
        return [f"training.accelerate_args: `--cpu` with {n} processes starts ONE process (accelerate's multi-CPU "
                f"path needs mpirun). Fix: on a machine without GPUs use [\"--multi_gpu\", \"--num_processes\", "
                f"\"{n}\"]: accelerate's torchrun launcher, which trains DDP over gloo on CPU"]
    if gpus and n > gpus:
        return [f"training.accelerate_args: {n} processes, but {gpus} GPU(s) are visible. Fix: set --num_processes "
                f"to at most {gpus} (one process per GPU)"]
    if not gpus and n > cpu_cores():
        return [f"training.accelerate_args: {n} processes, but this machine has {cpu_cores()} CPU core(s) and no GPU. "
                f"Fix: set --num_processes to at most {cpu_cores()} (one process per core)"]
    return []
