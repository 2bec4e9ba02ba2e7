"""The sections of the experiment config: every knob with its name, type, default and docstring.

A field marked `runtime` decides how a stage runs (threads, checkpoint interval, shard size, memory),
not what it computes: it is left out of every cache key, so changing it reuses finished stages.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MIRROR_ENV = "S3FT_DATA_MIRROR"


def runtime(default: Any = None, **constraints: Any) -> Any:
    """A field that cannot change a stage's output: out of every cache key."""
    return Field(default=default, json_schema_extra={"runtime": True}, **constraints)


def one_of(value: str, names: list[str], kind: str) -> str:
    """`value` when it is a registered name, else an error listing the names."""
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r}; choose one of {names}")
    return value


class Section(BaseModel):
    """A frozen block of settings; `key_dump` is what cache keys see of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def resolved(self) -> "Section":
        """The same settings with `auto` values decided for this machine (hashed and used by stages)."""
        return self

    def key_dump(self) -> dict[str, Any]:
        """The settings that can change an output, `auto` resolved; runtime fields left out."""
        me = self.resolved()
        out: dict[str, Any] = {}
        for name, field in type(me).model_fields.items():
            if (field.json_schema_extra or {}).get("runtime"):
                continue
            value = getattr(me, name)
            out[name] = value.key_dump() if isinstance(value, Section) else me.model_dump(
                mode="json", include={name})[name]
        return out


class ModelSettings(Section):
    ref: str = "bundled:smollm2-135m-instruct"
    """`bundled:smollm2-135m-instruct`, a Hugging Face hub id, or a local transformers folder."""
    dtype: Literal["bfloat16", "float32", "float16"] = "float32"
    """Weights dtype for generation (vLLM and transformers alike). bfloat16 on GPUs; on CPUs without
    AVX-512 bf16 it is ~3x slower than float32 (measured: 36 vs 118 tok/s)."""


class DataSettings(Section):
    source: str = "gsm8k"
    """Data source by name (see `tasks.data.sources`): gsm8k, mbpp, mbpp_sanitized, humaneval, nq."""
    train_size: int | None = Field(default=200, gt=0)
    """Training questions, sampled by `seed`; null = the whole split."""
    test_size: int | None = Field(default=200, gt=0)
    """Test questions, sampled by `seed`; null = the whole split."""
    seed: int = 0
    """Default: the experiment's root `seed`."""
    mirror: str | None = runtime()
    """Folder holding `<source>/` dataset files; default: env S3FT_DATA_MIRROR; unset = Hugging Face hub.
    Runtime: the examples' content is hashed, not where they were read from."""
    system_prompt: str | None = None
    """System message put before every question; null = the model's own chat-template default."""

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        from tasks.data.sources import source_names

        return one_of(v, source_names(), "data source")

    def mirror_path(self) -> Path | None:
        raw = self.mirror or os.environ.get(MIRROR_ENV)
        return Path(raw).expanduser().resolve() if raw else None


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


class GenerationSettings(Section):
    backend: Literal["auto", "vllm", "hf"] = "auto"
    """`auto` = vLLM when importable, else transformers (decided before hashing)."""
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    """0 = greedy."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    """Sampling seed; default: the experiment's root `seed`."""
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
        return dump


# Asking to "end with the answer" made SmolLM2 answer only "The answer is: N"; asking to explain
# each step gave real restatements (8/12 correct on a GSM8K probe).
DEFAULT_PARAPHRASE_PROMPT = (
    "Question: {question}\n\nHere is a correct solution:\n{gold}\n\n"
    "Rewrite this solution in your own words. Explain each step of the calculation, "
    "then give the final answer in the form 'The answer is: <number>'."
)


def _template_with(v: str, fields: tuple[str, ...]) -> str:
    for field in fields:
        if field not in v:
            raise ValueError(f"the template must contain {field}")
    return v


class ParaphraseSettings(Section):
    prompt: str = DEFAULT_PARAPHRASE_PROMPT
    """Template with `{question}` and `{gold}`; the base model answers it for every wrong answer."""
    max_new_tokens: int = Field(default=256, gt=0)
    min_length_ratio: float = Field(default=0.3, ge=0, le=1)
    """A paraphrase with fewer words than this fraction of the gold answer's is rejected (judged
    incorrect, reason `too short`): a bare "The answer is: N" passes the judge but restates nothing."""

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, v: str) -> str:
        return _template_with(v, ("{question}", "{gold}"))


# Strict and short: the judge model's first word decides; a reply that is neither word is counted
# as unparseable, never guessed.
DEFAULT_LLM_JUDGE_PROMPT = (
    "You are grading a student's answer to a question. Decide only whether the student's answer states "
    "the same answer as one of the correct answers. Ignore wording, but a vague, partial, hedged "
    "(several different answers offered) or different answer is wrong.\n\n"
    "Question: {question}\n"
    "Correct answer(s): {answers}\n"
    "Student's answer: {candidate}\n\n"
    "Is the student's answer correct? Reply with exactly one word: yes or no."
)


class LlmJudgeSettings(Section):
    """Step 2 of a two-step judge (QA): an LLM decides the answers the normalized match did not accept."""

    enabled: bool = True
    """false = the normalized match alone decides (every answer without a gold alias is incorrect)."""
    model: str | None = None
    """The judge model (same forms as model.ref); null = the experiment's base model. It judges every
    arm's answers, so it is never the model being evaluated after training."""
    prompt: str = DEFAULT_LLM_JUDGE_PROMPT
    """Template with {question}, {answers} (the gold aliases) and {candidate}; asks for yes or no."""
    max_new_tokens: int = Field(default=12, gt=0)
    """Room for a one-word reply or a short "the answer is (not) correct"."""
    system_prompt: str | None = None

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, v: str) -> str:
        return _template_with(v, ("{question}", "{answers}", "{candidate}"))


class JudgeSettings(Section):
    name: str = "math"
    """Judge by name (see `judges`): math, code, qa."""
    max_error_fraction: float = Field(default=0.05, ge=0, le=1)
    """A judging stage fails when more verdicts than this are `error` (judge infrastructure)."""
    reject_truncated: bool = True
    """An answer cut off at max_new_tokens is incorrect (it never stated its final answer), even when
    its last number happens to match; it is never trained on as a self or paraphrase target."""
    llm: LlmJudgeSettings = Field(default_factory=LlmJudgeSettings)
    """For judges with an LLM step (`qa`); ignored by the others."""

    @field_validator("name")
    @classmethod
    def _known_judge(cls, v: str) -> str:
        from judges import judge_names

        return one_of(v, judge_names(), "judge")


class LoraSettings(Section):
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


# transformers' schedulers that need no extra arguments (tests/test_config.py checks the names).
LrScheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                      "constant_with_warmup", "inverse_sqrt"]


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
    bf16: bool = False
    """bf16 mixed precision (GPU); CPU trains in fp32."""
    threads: int | None = runtime(None, gt=0)
    """torch threads on CPU; null = all cores."""
    save_steps: int | None = runtime(20, gt=0)
    """Checkpoint (LoRA weights, optimizer, RNG; a few MB) every N optimizer steps: a killed run resumes
    from its last complete checkpoint. null = no checkpoints (a killed training starts over)."""
    launcher: Literal["local", "accelerate"] = runtime("local")
    """`accelerate` runs training under `accelerate launch` (multi-GPU, FSDP/DeepSpeed by its config).
    One process trains the same adapter either way (tests/test_train.py)."""
    accelerate_args: list[str] = Field(default_factory=list)
    """Extra `accelerate launch` arguments, e.g. ["--num_processes", "8"]. In the cache key: the number
    of processes changes the effective batch."""


class EvaluationSettings(Section):
    max_new_tokens: int = Field(default=256, gt=0)


class BenchmarkSettings(Section):
    """General-ability benchmarks (lm-eval) for base and every arm; the headline is each score's drop."""

    names: list[Literal["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"]] = Field(
        default_factory=lambda: ["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"])
    """The paper's general benchmarks; [] skips benchmarking. With a data mirror they read its files."""
    extra: list[str] = Field(default_factory=list)
    """More lm-eval tasks by their lm-eval name (e.g. hellaswag, winogrande, arc_easy), from the hub."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """null = each benchmark's default (MMLU 0-shot; TruthfulQA's fixed 6-example QA prompt)."""
    mmlu_per_subject: int | None = Field(default=None, gt=0)
    """Questions per MMLU subject (57 subjects), sampled by `seed`; null = all 14,042."""
    truthfulqa_limit: int | None = Field(default=None, gt=0)
    """TruthfulQA questions (the same ones for MC1 and MC2), sampled by `seed`; null = all 817."""
    seed: int = 0
    """Default: the experiment's root `seed`."""
    backend: Literal["hf", "vllm"] = "hf"
    """`hf`: transformers with `peft=<adapter>`; `vllm`: vLLM with the LoRA applied (GPU machines)."""
    batch_size: int = Field(default=8, gt=0)
    max_length: int = Field(default=2048, gt=0)


class DiagnosticsSettings(Section):
    familiarity: bool = True
    """Score each arm's training targets under the base model (mean per-token log-prob by source: own,
    paraphrase, gold), the paper's evidence for why S3FT forgets less."""
    familiarity_max_per_source: int | None = Field(default=None, gt=0)
    """Targets scored per arm and source, sampled by `seed`; null = all."""
    seed: int = 0
    """Default: the experiment's root `seed`."""


class TrackingSettings(Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default: env MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db."""
    experiment: str = "s3ft"
