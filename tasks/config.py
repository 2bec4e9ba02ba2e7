"""The one experiment config schema: YAML files set values, `--set a.b=c` overrides them.

Every knob has a name, a type, a default and a docstring here. Validation runs before any work and
fails with one message per bad field that names the field and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.errors import InputError

MIRROR_ENV = "S3FT_DATA_MIRROR"
TRACKING_ENV = "MLFLOW_TRACKING_URI"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(Section):
    ref: str = "bundled:smollm2-135m-instruct"
    """`bundled:smollm2-135m-instruct`, a Hugging Face hub id, or a local transformers folder."""
    dtype: Literal["bfloat16", "float32", "float16"] = "float32"
    """Weights dtype for generation (vLLM and transformers alike). bfloat16 on GPUs; on CPUs without
    AVX-512 bf16 it is ~3x slower than float32 (measured: 36 vs 118 tok/s)."""


class DataSettings(Section):
    task: str = "gsm8k"
    """Data source by name (see `tasks.sources`)."""
    train_size: int | None = Field(default=200, gt=0)
    """Training questions, sampled by `seed`; null = the whole split."""
    test_size: int | None = Field(default=200, gt=0)
    """Test questions, sampled by `seed`; null = the whole split."""
    seed: int = 0
    mirror: str | None = None
    """Folder holding `<task>/` dataset files; default: env S3FT_DATA_MIRROR; unset = Hugging Face hub."""
    system_prompt: str | None = None
    """System message put before every question; null = the model's own chat-template default."""

    def mirror_path(self) -> Path | None:
        raw = self.mirror or os.environ.get(MIRROR_ENV)
        return Path(raw).expanduser().resolve() if raw else None


class VllmSettings(Section):
    tensor_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    enforce_eager: bool = True
    """Eager mode starts in ~4 s on CPU; compiled mode gains ~15% after a ~60 s start."""
    kv_cache_gib: float | None = Field(default=1.0, gt=0)
    """KV cache size (CPU needs it explicitly); null = use gpu_memory_utilization."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int = Field(default=2048, gt=0)


class GenerationSettings(Section):
    backend: Literal["auto", "vllm", "hf"] = "auto"
    """`auto` = vLLM when importable, else transformers."""
    max_new_tokens: int = Field(default=256, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    """0 = greedy."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    hf_batch_size: int = Field(default=16, gt=0)
    shard_size: int = Field(default=512, gt=0)
    """Prompts per shard. Each finished shard is written atomically, so a killed run resumes from its last
    finished shard; within a shard the engine batches freely (bigger shards keep a GPU busier)."""
    vllm: VllmSettings = Field(default_factory=VllmSettings)


# Asking to "end with the answer" made SmolLM2 answer only "The answer is: N"; asking to explain
# each step gave real restatements (8/12 correct on a GSM8K probe).
DEFAULT_PARAPHRASE_PROMPT = (
    "Question: {question}\n\nHere is a correct solution:\n{gold}\n\n"
    "Rewrite this solution in your own words. Explain each step of the calculation, "
    "then give the final answer in the form 'The answer is: <number>'."
)


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
        for field in ("{question}", "{gold}"):
            if field not in v:
                raise ValueError(f"the template must contain {field}")
        return v


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
    """Stage 2 of a two-stage judge (QA): an LLM decides the answers the normalized match did not accept."""

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
        for field in ("{question}", "{answers}", "{candidate}"):
            if field not in v:
                raise ValueError(f"the template must contain {field}")
        return v


class JudgeSettings(Section):
    name: str = "math"
    """Judge by name (see `judges`)."""
    max_error_fraction: float = Field(default=0.05, ge=0, le=1)
    """A judging stage fails when more verdicts than this are `error` (judge infrastructure)."""
    reject_truncated: bool = True
    """An answer cut off at max_new_tokens is incorrect (it never stated its final answer), even when
    its last number happens to match; it is never trained on as a self or paraphrase target."""
    llm: LlmJudgeSettings = Field(default_factory=LlmJudgeSettings)
    """For judges with an LLM stage (`qa`); ignored by the others."""


class LoraSettings(Section):
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


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
    lr_scheduler: str = "cosine"
    seed: int = 0
    bf16: bool = False
    """bf16 mixed precision (GPU); CPU trains in fp32."""
    threads: int | None = Field(default=None, gt=0)
    """torch threads on CPU; null = all cores."""
    save_steps: int | None = Field(default=20, gt=0)
    """Checkpoint (LoRA weights, optimizer, RNG; a few MB) every N optimizer steps: a killed run resumes
    from its last complete checkpoint. null = no checkpoints (a killed training starts over)."""
    launcher: Literal["local", "accelerate"] = "local"
    """`accelerate` runs training under `accelerate launch` (multi-GPU, FSDP/DeepSpeed by its config)."""
    accelerate_args: list[str] = Field(default_factory=list)
    """Extra `accelerate launch` arguments, e.g. ["--num_processes", "8"]."""


class EvaluationSettings(Section):
    max_new_tokens: int = Field(default=256, gt=0)


class BenchmarkSettings(Section):
    """General-ability benchmarks (lm-eval) for base and every arm; the headline is each score's drop."""

    tasks: list[Literal["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"]] = Field(
        default_factory=lambda: ["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"])
    """The paper's general benchmarks; [] skips benchmarking. With a data mirror they read its files."""
    extra_tasks: list[str] = Field(default_factory=list)
    """More lm-eval tasks by name (e.g. hellaswag, winogrande, arc_easy): lm-eval's own, from the hub."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """null = each task's default (MMLU 0-shot; TruthfulQA's fixed 6-example QA prompt)."""
    mmlu_per_subject: int | None = Field(default=None, gt=0)
    """Questions per MMLU subject (57 subjects), sampled by `seed`; null = all 14,042."""
    truthfulqa_limit: int | None = Field(default=None, gt=0)
    """TruthfulQA questions (the same ones for MC1 and MC2), sampled by `seed`; null = all 817."""
    seed: int = 0
    backend: Literal["hf", "vllm"] = "hf"
    """`hf`: transformers with `peft=<adapter>`; `vllm`: vLLM with the LoRA applied (GPU machines)."""
    batch_size: int = Field(default=8, gt=0)
    max_length: int = Field(default=2048, gt=0)
    vllm_kv_cache_gib: float | None = Field(default=1.0, gt=0)
    """vLLM KV cache (CPU needs it explicitly); null = vLLM's GPU memory default."""
    max_lora_rank: int = Field(default=16, gt=0)


class DiagnosticsSettings(Section):
    familiarity: bool = True
    """Score each arm's training targets under the base model (mean per-token log-prob by source: own,
    paraphrase, gold), the paper's evidence for why S3FT forgets less."""
    familiarity_max_per_source: int | None = Field(default=None, gt=0)
    """Targets scored per arm and source, sampled by `seed`; null = all."""
    seed: int = 0


class TrackingSettings(Section):
    tracking_uri: str | None = None
    """MLflow tracking URI; default: env MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db."""
    experiment: str = "s3ft"


class ExperimentConfig(Section):
    name: str = "experiment"
    output_dir: str = "runs"
    """Run folders, the content-addressed stage store and the default MLflow store live here."""
    model: ModelSettings = Field(default_factory=ModelSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    paraphrase: ParaphraseSettings = Field(default_factory=ParaphraseSettings)
    arms: list[str] = Field(default_factory=lambda: ["base", "sft", "s3ft"])
    """`base` (no training) plus target strategies by name (see `tasks.targets`)."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    seeds: list[int] | None = None
    """Training seeds: every trained arm is trained, evaluated and benchmarked once per seed and reported as
    mean ± stderr across seeds; generation, judging and paraphrasing are shared. null = [training.seed].
    `s3ft run CONFIG --seeds 3` sets [training.seed, +1, +2]."""
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    benchmarks: BenchmarkSettings = Field(default_factory=BenchmarkSettings)
    diagnostics: DiagnosticsSettings = Field(default_factory=DiagnosticsSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)

    @model_validator(mode="after")
    def _known_names(self) -> "ExperimentConfig":
        from judges import judge_names
        from tasks.sources import source_names
        from tasks.strategies import strategy_names

        if self.data.task not in source_names():
            raise ValueError(f"data.task: unknown task {self.data.task!r}; choose one of {source_names()}")
        if self.judge.name not in judge_names():
            raise ValueError(f"judge.name: unknown judge {self.judge.name!r}; choose one of {judge_names()}")
        unknown = [a for a in self.arms if a != "base" and a not in strategy_names()]
        if unknown:
            raise ValueError(f"arms: unknown arm(s) {unknown}; choose from ['base'] + {strategy_names()}")
        if self.benchmarks.backend == "vllm" and self.benchmarks.max_lora_rank < self.lora.r:
            raise ValueError(f"benchmarks.max_lora_rank: {self.benchmarks.max_lora_rank} < lora.r {self.lora.r}; "
                             f"vLLM would refuse the adapter. Fix: set it >= {self.lora.r}")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("seeds: list each training seed once and at least one (or null for training.seed)")
        if len(set(self.arms)) != len(self.arms) or not self.arms:
            raise ValueError("arms: list each arm once and at least one")
        return self

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser().resolve()

    def tracking_uri(self) -> str:
        return (self.tracking.tracking_uri or os.environ.get(TRACKING_ENV)
                or f"sqlite:///{self.output_path() / 'mlflow.db'}")


class ConfigError(InputError):
    """A config problem; the message names the field and the fix."""


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key!r} is a value, not a section. Fix: check the key path.")
        node = child
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=c` -> ("a.b", c) with c parsed as YAML (numbers, booleans, lists, null)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.learning_rate=1e-4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _spelling_fix(loc: tuple) -> str:
    """`rename it to training.learning_rate` for a near miss, else `remove it or correct its spelling`."""
    import difflib

    section: Any = ExperimentConfig
    for key in loc[:-1]:
        field = getattr(section, "model_fields", {}).get(str(key))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return "remove it or correct its spelling"
        section = field.annotation
    close = difflib.get_close_matches(str(loc[-1]), list(section.model_fields), n=1, cutoff=0.5)
    return (f"rename it to {'.'.join(map(str, (*loc[:-1], close[0])))}" if close
            else "remove it or correct its spelling")


def _format_errors(err: ValidationError, source: str) -> str:
    """One self-contained line per bad field: where, what, and the fix."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not field:  # a cross-field check: its message already names the field and the fix
            lines.append(f"invalid config ({source}): {msg}")
            continue
        if e["type"] == "extra_forbidden":
            msg = f"unknown key. Fix: {_spelling_fix(e['loc'])} (schema: tasks/config.py)"
        else:
            msg += f" (got {e.get('input')!r}). Fix: set a valid value for {field}"
        lines.append(f"invalid config ({source}): {field}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load YAML (if any), apply `key=value` overrides, validate."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist. Fix: pass a path such as configs/quickstart.yaml")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {p} is not valid YAML: {err}") from err
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, not {type(tree).__name__}")
        source = str(p)
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
