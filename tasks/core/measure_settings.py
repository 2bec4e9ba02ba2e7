"""Config sections for what is measured besides in-domain accuracy: the general benchmarks (lm-eval) and
the diagnostics (familiarity of targets, drift from the base model)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.core.section import Section


BenchmarkName = Literal["mmlu", "truthfulqa_mc1", "truthfulqa_mc2", "arc_easy", "arc_challenge", "hellaswag",
                        "winogrande", "piqa", "boolq", "openbookqa"]


class BenchmarkSettings(Section):
    """General-ability benchmarks (lm-eval) for base and every arm; the headline is each score's drop."""

    names: list[BenchmarkName] = Field(default_factory=lambda: ["mmlu", "truthfulqa_mc1", "truthfulqa_mc2"])
    """General benchmarks, lm-eval's own task definitions; [] skips benchmarking. The paper's are MMLU and
    TruthfulQA; the others are ones a small model can pass. With a data mirror they read its files."""
    extra: list[str] = Field(default_factory=list)
    """More lm-eval tasks by their lm-eval name (e.g. lambada_openai, sciq), read from the hub."""
    num_fewshot: int | None = Field(default=None, ge=0)
    """null = each benchmark's default (MMLU 0-shot; TruthfulQA's fixed 6-example QA prompt)."""
    mmlu_per_subject: int | None = Field(default=None, gt=0)
    """Questions per MMLU subject (57 subjects), sampled by `seed`; null = all 14,042."""
    truthfulqa_limit: int | None = Field(default=None, gt=0)
    """TruthfulQA questions (the same ones for MC1 and MC2), sampled by `seed`; null = all 817."""
    limits: dict[BenchmarkName, int] = Field(default_factory=dict)
    """Items of the other benchmarks, e.g. {arc_easy: 400}, sampled by `seed` from the split lm-eval scores;
    a benchmark not listed is scored in full."""
    seed: int = 0
    """Default: the experiment's root `seed`."""
    backend: Literal["hf", "vllm"] = "hf"
    """`hf`: transformers with `peft=<adapter>`; `vllm`: vLLM with the LoRA applied (GPU machines)."""
    share_context: bool = True
    """`hf`: run each multiple-choice context once and score its choices from its key/value cache
    (tasks/engines/shared_context.py; lm-eval's log-probs up to float rounding, 2-5x less work on few-shot
    prompts). false: lm-eval's own `HFLM`, every choice with its whole context."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Scoring dtype. `auto` = float32 on CPU, the run's `model.dtype` on a GPU. Scores are paired differences
    of near-equal log-likelihoods: bf16 rounding of a merged model's weights alone flipped 3 of 100 PIQA items
    of one arm (quickstart, avx512_bf16 CPU; fp32: none), so a CPU measures in fp32 as drift does."""
    batch_size: int = Field(default=8, gt=0)
    """Sequences per forward pass (`hf`; with `share_context`, contexts per pass)."""
    max_length: int = Field(default=2048, gt=0)

    @field_validator("limits")
    @classmethod
    def _positive(cls, limits: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in limits.items() if v <= 0 or k in ("mmlu", "truthfulqa_mc1", "truthfulqa_mc2")}
        if bad:
            raise ValueError(f"{bad}: give each a positive count (MMLU and TruthfulQA have mmlu_per_subject and "
                             f"truthfulqa_limit)")
        return limits


class DiagnosticsSettings(Section):
    familiarity: bool = True
    """Score each arm's training targets under the base model (mean per-token log-prob by source: own,
    paraphrase, gold), the paper's evidence for why S3FT forgets less."""
    familiarity_max_per_source: int | None = Field(default=None, gt=0)
    """Targets scored per arm and source, sampled by `seed`; null = all."""
    seed: int = 0
    """Default: the experiment's root `seed`."""


DriftBenchmark = Literal["mmlu", "truthfulqa", "arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande",
                         "boolq", "openbookqa"]


class DriftSettings(Section):
    """How far each trained model moved from the base model on general text no arm trains on: prompts drawn
    from the general benchmarks' questions, the base model's own greedy replies (generated once), then per
    arm and seed the per-token KL(base || arm) and the change of the replies' log-prob, teacher-forced."""

    enabled: bool = True
    prompts: int = Field(default=256, gt=0)
    """Prompts, drawn by `seed` in equal shares from `benchmarks`."""
    benchmarks: list[DriftBenchmark] = Field(
        default_factory=lambda: ["mmlu", "truthfulqa", "arc_easy", "hellaswag", "piqa"], min_length=1)
    """Where the prompts come from: each benchmark's questions (with their answer options, never the answer)."""
    max_new_tokens: int = Field(default=128, gt=0)
    """Length cap of the base model's replies (the text the arms are compared on)."""
    batch_size: int = Field(default=8, gt=0)
    seed: int = 0
    """Default: the experiment's root `seed`."""

    @field_validator("benchmarks")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("list each benchmark once")
        return names
