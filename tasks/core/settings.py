"""The sections of the experiment config that say what runs: model, data, generation and its engine,
LoRA training, evaluation, tracking. Every knob has its name, type, default and docstring here; judging
is in judge_settings.py, benchmarks and diagnostics in measure_settings.py, the root in config.py.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.data_settings import MIRROR_ENV, DataSettings, FieldMap  # noqa: F401  (re-exported)
from tasks.core.section import Section, one_of, runtime


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (/proc/cpuinfo) with native bf16 matmuls; without them bf16 is emulated, ~3x slower than fp32."""


def cpu_flags() -> set[str]:
    """This machine's CPU flags (empty where /proc/cpuinfo has none, e.g. not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.split(":", 1)[1].split()}


def machine_dtype() -> str:
    """`auto`'s choice: bfloat16 on a GPU or a CPU with native bf16, float32 on every other CPU."""
    import torch

    if torch.cuda.is_available() or cpu_flags() & set(BF16_CPU_FLAGS):
        return "bfloat16"
    return "float32"


class ModelSettings(Section):
    ref: str = "bundled:smollm2-135m-instruct"
    """`bundled:smollm2-135m-instruct`, a Hugging Face hub id, or a local transformers folder."""
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    """Compute dtype of generation (vLLM, transformers) and, through `training.bf16: auto`, of training's
    autocast. `auto` = bfloat16 on GPUs and on CPUs with avx512_bf16 or AMX (1.66x faster generation there,
    PERFORMANCE.md), float32 on other CPUs (bf16 is emulated there: 36 vs 118 tok/s measured). Benchmarks
    (`benchmarks.dtype`), drift and familiarity score in float32 on a CPU. Decided before hashing, so runs in
    different dtypes never share a cached stage; the report's first line names the precision."""

    def resolved(self) -> "ModelSettings":
        return self if self.dtype != "auto" else self.model_copy(update={"dtype": machine_dtype()})


class VllmSettings(Section):
    """vLLM engine settings, for generation and (with `benchmarks.backend: vllm`) for lm-eval."""

    tensor_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    enforce_eager: bool = True
    """Eager mode starts in ~4 s on CPU; compiled mode gains ~15% after a ~60 s start."""
    kv_cache_gib: float | None = runtime(1.0, gt=0)
    """KV cache size (CPU needs it explicitly); null = use gpu_memory_utilization."""
    gpu_memory_utilization: float = runtime(0.9, gt=0, le=1)
    max_model_len: int = Field(default=2048, gt=0)
    max_lora_rank: int = runtime(16, gt=0)
    """Largest LoRA rank the engine accepts (lm-eval with adapters); at least lora.r (checked), so it
    decides only whether vLLM accepts the adapter, never a score: runtime."""


class RepetitionStop(Section):
    """End an answer caught in a loop: when its last `min_count` runs of some n-gram of `min_pattern` to
    `max_pattern` tokens are identical (vLLM's `repetition_detection`; the transformers backend checks the
    same rule). Such an answer finishes with reason `repetition`, which `judge.reject_truncated` rejects like
    an answer cut at the token cap."""

    max_pattern: int = Field(gt=0)
    """Longest repeated token n-gram looked for."""
    min_pattern: int = Field(default=1, gt=0)
    min_count: int = Field(default=3, ge=2)
    """Consecutive repetitions that count as a loop."""

    @model_validator(mode="after")
    def _ordered(self) -> "RepetitionStop":
        if self.min_pattern > self.max_pattern:
            raise ValueError(f"min_pattern {self.min_pattern} exceeds max_pattern {self.max_pattern}")
        return self


class GenerationSettings(Section):
    backend: Literal["auto", "vllm", "hf"] = "auto"
    """`auto` = vLLM when importable, else transformers (decided before hashing)."""
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    """0 = greedy."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    """Sampling seed; default: the experiment's root `seed`."""
    stop: list[str] = Field(default_factory=list)
    """Strings that end an answer (not kept in it), e.g. a task's end-of-answer marker. They apply to the
    answers to the task's prompts (train and test answers, paraphrases), not to the LLM judge's replies or to
    drift's general-text replies."""
    repetition_stop: RepetitionStop | None = None
    """End answers that loop (see RepetitionStop); same scope as `stop`. null: answers run to EOS or the cap."""
    samples: int = Field(default=1, ge=1)
    """k: answers drawn per training question for the arms that sample (rft, s3ft_k; they need k >= 2), in one
    request with n=k at `sample_temperature` (seeded by `seed`), and paraphrase attempts per question for s3ft_k.
    The greedy answer is a separate stage, so adding sampling arms recomputes nothing that exists."""
    sample_temperature: float = Field(default=0.7, gt=0)
    """Temperature of those samples (Yuan et al. 2023 sample RFT answers at 0.7)."""
    hf_batch_size: int = Field(default=16, gt=0)
    shard_size: int = runtime(512, gt=0)
    """Prompts per shard. Each finished shard is written atomically, so a killed run resumes from its last
    finished shard; within a shard the engine batches freely (bigger shards keep a GPU busier)."""

    def resolved(self) -> "GenerationSettings":
        if self.backend != "auto":
            return self
        return self.model_copy(update={"backend": "vllm" if importlib.util.find_spec("vllm") else "hf"})

    def key_dump(self) -> dict[str, Any]:
        dump = super().key_dump()
        if dump["backend"] == "vllm":
            del dump["hf_batch_size"]  # only the transformers backend batches by it
        if not dump["stop"]:
            del dump["stop"]  # no stop: the keys of runs made before the setting existed
        if dump["repetition_stop"] is None:
            del dump["repetition_stop"]
        del dump["sample_temperature"]  # a sampling stage gets it as its `temperature`
        if dump["samples"] == 1:
            del dump["samples"]  # one answer per prompt: the keys of runs made before sampling existed
        return dump


class LoraSettings(Section):
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


# transformers' schedulers that need no extra arguments (tests/test_config.py checks the names).
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                      "constant_with_warmup", "inverse_sqrt"]


def command_flag(args: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` (accelerate also spells `_` as `-`) in a command line, the last one
    where it is given twice (as argparse, and so accelerate, takes it); None if absent."""
    names, value = {name, name.replace("_", "-")}, None
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            value = args[i + 1]
        elif arg.split("=", 1)[0] in names and "=" in arg:
            value = arg.split("=", 1)[1]
    return value


class TrainingSettings(Section):
    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, gt=0)
    """Stop after this many optimizer steps (overrides epochs)."""
    batch_size: int = Field(default=8, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    max_seq_len: int = Field(default=512, gt=16)
    group_by_length: bool = True
    """Batch examples of similar length (less padding: ~30% faster on GSM8K-length targets)."""
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_scheduler: LrScheduler = "cosine"
    seed: int = 0
    """Default: the experiment's root `seed`; `seeds` lists several."""
    bf16: bool | Literal["auto"] = "auto"
    """bf16 autocast (fp32 master weights and optimizer). `auto` = when the experiment's `model.dtype`
    resolves to bfloat16 (GPUs, CPUs with avx512_bf16 or AMX), so an fp32 run stays fp32 throughout."""
    threads: int | None = runtime(None, gt=0)
    """torch threads per training process on CPU; null = the cores shared out among this machine's processes."""
    save_steps: int | None = runtime(20, gt=0)
    """Checkpoint (LoRA weights, optimizer, RNG; a few MB) every N optimizer steps: a killed run resumes
    from its last complete checkpoint. null = no checkpoints (a killed training starts over)."""
    launcher: Literal["local", "accelerate"] = runtime("local")
    """`accelerate` runs training under `accelerate launch`: DDP over GPUs, or over gloo on CPU (README "From one
    machine to a cluster"). One process trains the same adapter either way (tests/test_train.py)."""
    accelerate_args: list[str] = Field(default_factory=list)
    """`accelerate launch` arguments, e.g. ["--multi_gpu", "--num_processes", "4"]; no count named = one process.
    In the cache key as the process count alone (it changes the effective batch), spelled ["--multi_gpu",
    "--num_processes", "N"], or [] for one process: the other arguments (a port, a config file's path, the order)
    cannot change the adapter, since s3ft sets the precision itself and refuses sharded engines."""

    def key_dump(self) -> dict[str, Any]:
        out = super().key_dump()
        try:
            n = int(command_flag(self.accelerate_args, "--num_processes") or 1)
        except ValueError:
            return out  # refused before any work (tasks/engines/devices.py); the key keeps the words
        out["accelerate_args"] = [] if n == 1 else ["--multi_gpu", "--num_processes", str(n)]
        return out

    def resolved(self) -> "TrainingSettings":
        """`bf16: auto` decided by this machine alone (the flow decides it by `model.dtype` instead)."""
        return self if self.bf16 != "auto" else self.model_copy(update={"bf16": machine_dtype() == "bfloat16"})


class EvaluationSettings(Section):
    max_new_tokens: int = Field(default=256, gt=0)


class TrackingSettings(Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default: env MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db."""
    experiment: str = "s3ft"


STORE_ENV = "S3FT_STORE_URI"
REMOTE_STORE_FIX = ("Fix: mount it on every worker (NFS, s3fs, gcsfuse, a cluster filesystem) and set store.uri to "
                    "the mount's path")


class StoreSettings(Section):
    uri: str | None = runtime(None)
    """Where every worker finds the finished stages: the content-addressed stage store (`store/`), Prefect's
    cache records (`prefect-results/`) and the stage locks (`locks/`). A folder path or `file://` URI that every
    worker reaches under the same path (an NFS or cluster filesystem, a mounted bucket). Default: env
    S3FT_STORE_URI, else output_dir. A location, never part of a cache key."""

    @field_validator("uri")
    @classmethod
    def _local(cls, uri: str | None) -> str | None:
        if uri is not None:
            store_folder(uri)
        return uri

    def folder(self, default: Path) -> Path:
        """The store's root folder: `uri`, else env S3FT_STORE_URI, else `default` (output_dir)."""
        uri = self.uri or os.environ.get(STORE_ENV)
        return store_folder(uri) if uri else default


def store_folder(uri: str) -> Path:
    """The local folder a store URI names (a path or `file://`); a remote scheme is refused with the fix."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r} is a file:// URI of host {parsed.netloc!r}. {REMOTE_STORE_FIX}")
        return Path(unquote(parsed.path))
    if len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        raise ValueError(f"{uri!r}: {parsed.scheme}:// stores are not read or written directly (stages read and write "
                         f"local files). {REMOTE_STORE_FIX}")
    return Path(uri).expanduser().resolve()
