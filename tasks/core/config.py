"""The one experiment config schema: the sections of `tasks.core.settings` under one frozen root.

One root `seed` feeds every section's seed unless that section sets its own; `seeds` (the training
seeds) defaults to `[training.seed]`. Field errors and cross-field errors are each reported all at
once. Loading YAML files and `--set` overrides is `tasks.core.config_file`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from tasks.core.judge_settings import JudgeSettings, ParaphraseSettings
from tasks.core.method_settings import RftSettings
from tasks.core.measure_settings import BenchmarkSettings, DiagnosticsSettings, DriftSettings
from tasks.core.section import Section
from tasks.core.settings import STORE_ENV
from tasks.core.settings import (DataSettings, EvaluationSettings, GenerationSettings, LoraSettings, ModelSettings,
                                 StoreSettings, TrackingSettings, TrainingSettings, VllmSettings)

TRACKING_ENV = "MLFLOW_TRACKING_URI"
SEEDED_SECTIONS = ("data", "generation", "training", "benchmarks", "diagnostics", "drift")

# Keys of earlier versions: a config that still uses one gets an error naming the new key.
RENAMED = {
    "data.task": "data.source",
    "benchmarks.tasks": "benchmarks.names",
    "benchmarks.extra_tasks": "benchmarks.extra",
    "generation.vllm": "vllm",
    "benchmarks.vllm_kv_cache_gib": "vllm.kv_cache_gib",
    "benchmarks.max_lora_rank": "vllm.max_lora_rank",
}


class ExperimentConfig(Section):
    name: str = "experiment"
    """Names the run folders (`output_dir/<name>/<timestamp>/`): one folder name, never a path."""
    output_dir: str = "runs"
    """Run folders, the content-addressed stage store and the default MLflow store live here."""
    seed: int = 0
    """The root seed: every section's `seed` (data sampling, generation sampling, training, benchmark
    subsets, diagnostics) takes this value unless the section sets its own."""
    model: ModelSettings = Field(default_factory=ModelSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    vllm: VllmSettings = Field(default_factory=VllmSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    paraphrase: ParaphraseSettings = Field(default_factory=ParaphraseSettings)
    arms: list[str] = Field(default_factory=lambda: ["base", "sft", "s3ft"])
    """`base` (no training) plus target strategies by name (see `tasks.methods.strategies`)."""
    rft: RftSettings = Field(default_factory=RftSettings)
    """The `rft` arm's fallback and dedupe (its samples: generation.samples, generation.sample_temperature)."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    seeds: list[int] | None = None
    """Training seeds: every trained arm is trained, evaluated and benchmarked once per seed and reported as
    mean ± stderr across seeds; generation, judging and paraphrasing are shared. null = [training.seed].
    `s3ft run CONFIG --seeds 3` sets [training.seed, +1, +2]."""
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    benchmarks: BenchmarkSettings = Field(default_factory=BenchmarkSettings)
    diagnostics: DiagnosticsSettings = Field(default_factory=DiagnosticsSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)

    @model_validator(mode="before")
    @classmethod
    def _derive_seeds(cls, data: Any) -> Any:
        """Sections without their own `seed` take the root seed."""
        if not isinstance(data, dict):
            return data
        try:
            root = TypeAdapter(int).validate_python(data.get("seed", 0))
        except ValidationError:
            return data  # the field error names it
        data = dict(data)
        for name in SEEDED_SECTIONS:
            section = data.get(name, {})
            if isinstance(section, dict) and "seed" not in section:
                data[name] = {**section, "seed": root}
        return data

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        """A name from a config file, `--set` or a deployment's UI parameters never leaves `output_dir`."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            raise ValueError(f"{name!r} is not one folder name (the run folder is output_dir/<name>/). Fix: use "
                             f"letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. nq-small")
        return name

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, arms: list[str]) -> list[str]:
        from tasks.methods.strategies import strategy_names

        if len(set(arms)) != len(arms) or not arms:
            raise ValueError("list each arm once and at least one")
        unknown = [a for a in arms if a != "base" and a not in strategy_names()]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; choose from ['base'] + {strategy_names()}")
        return arms

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError("list each training seed once and at least one (or null for training.seed)")
        return seeds

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentConfig":
        """Checks across sections, all reported together; then `seeds` is filled in."""
        from judges import get_judge
        from tasks.methods.strategies import get_strategy

        problems = []
        if self.benchmarks.backend == "vllm" and self.vllm.max_lora_rank < self.lora.r:
            problems.append(f"vllm.max_lora_rank: {self.vllm.max_lora_rank} < lora.r {self.lora.r}; vLLM would "
                            f"refuse the adapter. Fix: set it >= {self.lora.r}")
        if self.training.launcher != "accelerate" and self.training.accelerate_args:
            problems.append("training.accelerate_args: set, but training.launcher is not `accelerate`. Fix: set "
                            "training.launcher=accelerate, or remove the arguments")
        if self.judge.name == "llm" and not self.judge.llm.enabled:
            problems.append("judge.llm.enabled: the llm judge needs its model. Fix: set judge.llm.enabled: true")
        if self.judge.llm.model is not None and not getattr(get_judge(self.judge.name), "llm_step", False):
            problems.append(f"judge.llm.model: judge {self.judge.name!r} has no LLM step. Fix: remove "
                            f"judge.llm.model, or use a judge with one (qa)")
        sampling = [a for a in self.trained_arms() if get_strategy(a).needs_samples]
        if sampling and self.generation.samples < 2:
            problems.append(f"generation.samples: arms {sampling} learn from k sampled answers per question, and k is "
                            f"{self.generation.samples}. Fix: set generation.samples to 2 or more (e.g. 4)")
        if problems:
            raise ValueError("\n".join(problems))
        if self.seeds is None:  # frozen: the resolved list is written once, here
            object.__setattr__(self, "seeds", [self.training.seed])
        return self

    def with_seed_count(self, count: int) -> "ExperimentConfig":
        """The same experiment trained with `count` seeds: training.seed, +1, ..."""
        return self.model_copy(update={"seeds": list(range(self.training.seed, self.training.seed + count))})

    def trained_arms(self) -> list[str]:
        return [a for a in self.arms if a != "base"]

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser().resolve()

    def store_root(self) -> Path:
        """The folder every worker shares (store.uri): the stage store, Prefect's cache records, the locks."""
        try:
            return self.store.folder(self.output_path())
        except ValueError as err:  # env S3FT_STORE_URI (a config's store.uri is checked when it is loaded)
            from tasks.core.errors import ConfigError

            raise ConfigError(f"{STORE_ENV} (store.uri's default): {err}") from None

    def store_path(self) -> Path:
        """The content-addressed stage store."""
        return self.store_root() / "store"

    def results_path(self) -> Path:
        """Prefect's cache records of the stages (its result storage)."""
        return self.store_root() / "prefect-results"

    def locks_path(self) -> Path:
        return self.store_root() / "locks"

    def tracking_uri(self) -> str:
        return (self.tracking.tracking_uri or os.environ.get(TRACKING_ENV)
                or f"sqlite:///{self.output_path() / 'mlflow.db'}")
