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


MODES = {"--multi_gpu": "MULTI_GPU", "--multi-gpu": "MULTI_GPU", "--cpu": "CPU", "--tpu": "XLA",
         "--use_fsdp": "FSDP", "--use-fsdp": "FSDP", "--use_deepspeed": "DEEPSPEED", "--use-deepspeed": "DEEPSPEED",
         "--use_megatron_lm": "MEGATRON_LM", "--use-megatron-lm": "MEGATRON_LM"}
"""accelerate's mode flags; with none of them it takes the config file's distributed_type."""


def _config(args: list[str]) -> tuple[dict[str, Any], str | None]:
    """The config file `accelerate launch ARGS` reads, and its path: the named one, else accelerate's default file
    where it exists (read unless `--cpu` is given); ({}, None) when there is none."""
    import yaml

    path = command_flag(args, "--config_file")
    read = Path(path).expanduser() if path is not None else default_config_file()
    if path is None and ("--cpu" in args or not read.is_file()):
        return {}, None
    try:
        config = yaml.safe_load(read.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        what = "its --config_file" if path is not None else "accelerate's default config, read when none is named,"
        raise ValueError(f"cannot read {what} {read}: {err}") from err
    if not isinstance(config, dict):
        raise ValueError(f"{read} is not a YAML mapping")
    return config, str(read)


def accelerate_launch(args: list[str]) -> dict[str, Any]:
    """What `accelerate launch ARGS` will start, as accelerate decides it: processes (None: not named), the mode
    (a mode flag, else the config file's distributed_type), the sharded engine it asks for (FSDP, DeepSpeed), if
    any, the GPUs a config file restricts it to, and the options s3ft sets itself."""
    config, read = _config(args)
    n = command_flag(args, "--num_processes")
    if n is not None and not n.lstrip("-").isdigit():
        raise ValueError(f"--num_processes {n!r} is not a whole number")
    mode = next((MODES[a] for a in args if a in MODES), None) or config.get("distributed_type") or "NO"
    gpu_ids = command_flag(args, "--gpu_ids") or config.get("gpu_ids") or "all"
    return {"processes": int(n) if n is not None else None, "cpu": mode == "CPU" or bool(config.get("use_cpu")),
            "sharded": mode if mode in UNSUPPORTED else None, "multi": mode == "MULTI_GPU",
            "multi_flag": bool({"--multi_gpu", "--multi-gpu"} & set(args)),  # accelerate refuses it with 1 process
            "config_file": command_flag(args, "--config_file") is not None, "config_read": read,
            "gpu_ids": None if str(gpu_ids) == "all" else len(str(gpu_ids).split(",")),
            "parallelism_config": bool(config.get("parallelism_config")),
            "pinned": sorted({a.split("=", 1)[0] for a in args} & PINNED)}


PINNED = {"--mixed_precision", "--mixed-precision", "--dynamo_backend", "--dynamo-backend", "--num_machines",
          "--num-machines"}
"""accelerate options s3ft sets itself (launch_args): the precision follows training.bf16, which the key holds;
torch.compile stays off; one machine per training (a config file's num_machines would make torchrun wait for
other nodes and split the processes over them)."""


def launch_args(args: list[str], bf16: bool) -> list[str]:
    """`accelerate launch` arguments as s3ft passes them. One process unless the count is named, never accelerate's
    machine-dependent default (all GPUs), so that the training key, which holds the arguments, holds the count.
    The precision, torch.compile and the machine count are s3ft's, whatever a config file says (accelerate lets
    the command line override its config, and the Trainer reads the precision accelerate exports)."""
    count = [] if command_flag(args, "--num_processes") is not None else ["--num_processes", "1"]
    return [*args, *count, "--mixed_precision", "bf16" if bf16 else "no", "--dynamo_backend", "no",
            "--num_machines", "1"]


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
        except ValueError as err:
            problems.append(f"training.accelerate_args: {err}. Fix: name an existing accelerate config file (a YAML "
                            f"mapping) and a whole number of processes")
    return problems


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
                f"training.bf16, which the training key holds; torch.compile stays off; one machine per training). "
                f"Fix: remove it, and set training.bf16 for bf16 training"]
    if launch["parallelism_config"]:
        return [f"training.accelerate_args: the config file {launch['config_read']} sets parallelism_config (FSDP2 "
                f"sharding), which is not supported yet. Fix: remove it, or name another file with --config_file"]
    n = 1 if n is None else n  # what launch_args passes: one process unless named
    if n < 1:
        return [f"training.accelerate_args: --num_processes {n}. Fix: name 1 or more processes"]
    if n > 1 and not launch["multi"] and not launch["cpu"]:
        return [f"training.accelerate_args: --num_processes {n} without --multi_gpu: accelerate then starts one "
                f"process on a machine without GPUs and {n} on one with several, under the same training key. "
                f"Fix: add \"--multi_gpu\" (DDP; over gloo on CPU)"]
    if launch["multi_flag"] and n < 2:
        return [f"training.accelerate_args: --multi_gpu with {n} process(es). Fix: add --num_processes 2 or more "
                f"(one per GPU; on CPU, one per core)"]
    if launch["cpu"] and n > 1:
        return [f"training.accelerate_args: `--cpu` with {n} processes starts ONE process (accelerate's multi-CPU "
                f"path needs mpirun). Fix: on a machine without GPUs use [\"--multi_gpu\", \"--num_processes\", "
                f"\"{n}\"]: accelerate's torchrun launcher, which trains DDP over gloo on CPU"]
    if gpus and launch["gpu_ids"] is not None and n > launch["gpu_ids"]:
        return [f"training.accelerate_args: {n} processes, but gpu_ids (--gpu_ids or the config file's) names "
                f"{launch['gpu_ids']} GPU(s). Fix: list one GPU id per process, or lower --num_processes"]
    if gpus and n > gpus:
        return [f"training.accelerate_args: {n} processes, but {gpus} GPU(s) are visible. Fix: set --num_processes "
                f"to at most {gpus} (one process per GPU)"]
    if not gpus and n > cpu_cores():
        return [f"training.accelerate_args: {n} processes, but this machine has {cpu_cores()} CPU core(s) and no GPU. "
                f"Fix: set --num_processes to at most {cpu_cores()} (one process per core)"]
    return []
