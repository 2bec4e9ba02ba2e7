"""The devices this machine offers and the parallelism a config asks of them, compared before any work.

vLLM splits one engine over `vllm.tensor_parallel_size` GPUs; `accelerate launch` starts one training process per
device. Asking for more than the machine has fails minutes later inside those engines (a hang, a CUDA error, or,
for accelerate's `--cpu`, silently one process): here it is one line naming the field and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def visible_gpus() -> int:
    """CUDA devices this process may use (CUDA_VISIBLE_DEVICES applied); 0 on a CPU-only machine."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def numa_nodes() -> int:
    """vLLM's CPU backend runs one tensor-parallel rank per NUMA node."""
    return max(1, len(list(Path("/sys/devices/system/node").glob("node[0-9]*"))))


def _flag(args: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in a command line; None when absent."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def accelerate_launch(args: list[str]) -> dict[str, Any]:
    """What `accelerate launch ARGS` will start: processes, and whether on CPU, GPUs or accelerate's default."""
    import yaml

    config: dict[str, Any] = {}
    if (path := _flag(args, "--config_file")) is not None:
        config = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    n = _flag(args, "--num_processes") or config.get("num_processes") or 1
    cpu = "--cpu" in args or bool(config.get("use_cpu"))
    return {"processes": int(n), "cpu": cpu}


def parallelism_problems(tensor_parallel: int, data_parallel: int, uses_vllm: bool, launcher: str,
                         accelerate_args: list[str]) -> list[str]:
    """One line per request this machine cannot serve, each naming the field and the fix."""
    problems = []
    if uses_vllm and data_parallel > 1:
        problems.append(f"vllm.data_parallel_size: {data_parallel}, but vLLM's offline engine refuses data "
                        f"parallelism within one process (vLLM 0.32: 'LLM(data_parallel_size>1) is not supported for "
                        f"single-process usage'). Fix: set it to 1 and split a model over GPUs with "
                        f"vllm.tensor_parallel_size, or give each GPU its own worker and run")
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
        except (OSError, ValueError, AttributeError) as err:
            problems.append(f"training.accelerate_args: cannot read its --config_file / --num_processes ({err}). "
                            f"Fix: name an existing accelerate config file and a whole number of processes")
    return problems


def _accelerate_problems(launch: dict[str, Any], gpus: int) -> list[str]:
    n = launch["processes"]
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
