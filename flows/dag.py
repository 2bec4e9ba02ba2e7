"""The S3FT experiment as a DAG of cached stages; `run_experiment` reads as the method.

    prepare_model, load_examples(train/test)
    1-4  answer_train_split (flows/train_evidence.py): the base model answers (greedy; k samples where an arm
         samples), is judged, paraphrases gold where a strategy asks
    6    evaluate(base): test answers + judge, general benchmarks; the base model's replies to general prompts
    5-6  per arm and training seed: targets -> train (LoRA) -> merge -> evaluate -> drift from base
         familiarity of each arm's targets under the base model

Every function takes the stage runner `run` and the frozen config and returns frozen records
(flows/results.py; DriftText alone is filled in once, by the first arm's drift); stages are called by name
with their typed inputs (`run(label, stage, **inputs)`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.answering import NO_STOPS, Model, answer_and_judge, generate_inputs, judge_steps, llm_judge_model
from flows.results import ArmRun, Evaluation, SeedRun
from flows.runner import StageRunner
from flows.train_evidence import TrainEvidence, answer_train_split
from tasks.benchmark import benchmark
from tasks.benchmark_data import benchmark_data
from tasks.core.config import ExperimentConfig
from tasks.core.records import Artifact
from tasks.core.verdicts import score
from tasks.data import split_fingerprint
from tasks.data.custom import configured_fingerprint
from tasks.data.benchmark_mirror import mirror_hash
from tasks.drift import drift
from tasks.drift_reference import drift_reference
from tasks.drift_prompts import drift_prompts
from tasks.engines.backends import release_backends
from tasks.engines.models import model_fingerprint, stored_dtype
from tasks.familiarity import familiarity
from tasks.generate import generate
from tasks.load_examples import load_examples
from tasks.merge import merge
from tasks.methods.strategies import get_strategy
from tasks.prepare_model import prepare_model
from tasks.targets import make_targets
from tasks.train import train


@dataclass
class DriftText:
    """General-domain prompts and the base model's greedy replies: the text drift is measured on. The base
    model's side of drift (`reference`) is filled by the first arm's drift, once the engines are released."""

    prompts: Artifact
    replies: Artifact
    reference: Artifact | None = None


@dataclass(frozen=True)
class ExperimentRun:
    base: Model
    arms: tuple[ArmRun, ...]
    """Base first, then every trained arm in config order."""
    familiarity: dict[str, dict[str, float]]


def train_inputs(cfg: ExperimentConfig, base: Model, targets: Artifact, seed: int) -> dict[str, Any]:
    """The train stage's inputs for one arm's targets and one training seed."""
    return dict(model=base.folder, targets=targets, lora=cfg.lora,
                settings=cfg.training.model_copy(update={"seed": seed, "bf16": training_bf16(cfg)}))


def training_bf16(cfg: ExperimentConfig) -> bool:
    """Training's bf16 autocast: `auto` follows the run's weights dtype, so an fp32 run stays fp32."""
    return cfg.model.resolved().dtype == "bfloat16" if cfg.training.bf16 == "auto" else bool(cfg.training.bf16)


def load_split(run: StageRunner, cfg: ExperimentConfig, split: str, size: int | None) -> Artifact:
    if cfg.data.own_data():
        return run(f"load_examples:{split}", load_examples, source=cfg.data.source, split=split, size=size,
                   seed=cfg.data.seed, system_prompt=cfg.data.system_prompt, mirror=None,
                   source_hash=configured_fingerprint(cfg.data, split), own=cfg.data)
    mirror = cfg.data.mirror_path()
    return run(f"load_examples:{split}", load_examples, source=cfg.data.source, split=split, size=size,
               seed=cfg.data.seed, system_prompt=cfg.data.system_prompt, mirror=str(mirror) if mirror else None,
               source_hash=split_fingerprint(cfg.data.source, split, mirror))


def general_scores(run: StageRunner, cfg: ExperimentConfig, tag: str, model: Model,
                   data: Artifact | None) -> Artifact | None:
    """lm-eval general benchmarks of the base model or an arm's merged model; metrics.json holds `mmlu/acc`, ..."""
    if not (cfg.benchmarks.names or cfg.benchmarks.extra):
        return None
    vllm = cfg.vllm if cfg.benchmarks.backend == "vllm" else None
    return run(f"benchmark:{tag}", benchmark, model=model.folder, data=data, settings=cfg.benchmarks, vllm=vllm,
               dtype=benchmark_dtype(cfg))


def benchmark_dtype(cfg: ExperimentConfig) -> str:
    """lm-eval's dtype: `benchmarks.dtype`, whose `auto` is float32 on CPU and the model's dtype on a GPU."""
    import torch

    if cfg.benchmarks.dtype != "auto":
        return cfg.benchmarks.dtype
    return cfg.model.resolved().dtype if torch.cuda.is_available() else "float32"


def evaluate(run: StageRunner, cfg: ExperimentConfig, tag: str, model: Model, test: Artifact,
             judge_model: Model | None, bench_data: Artifact | None) -> Evaluation:
    """Step 6 for one model: test answers judged, then (engine released) the general benchmarks."""
    answers = answer_and_judge(run, cfg, f"test:{tag}", model, test, cfg.evaluation.max_new_tokens, judge_model)
    release_backends()
    metrics = general_scores(run, cfg, tag, model, bench_data)
    return Evaluation(verdicts=answers.verdicts, scores=score(model.ref, "test", answers.verdicts),
                      judged=judge_steps(answers.verdicts), benchmark=metrics,
                      general=json.loads(Path(metrics.path).read_text()) if metrics else {})


def drift_text(run: StageRunner, cfg: ExperimentConfig, base: Model, bench_data: Artifact | None) -> DriftText | None:
    """The general prompts and the base model's greedy replies (generated once, while its engine is up)."""
    if not (cfg.drift.enabled and cfg.trained_arms()):
        return None
    d = cfg.drift
    prompts = run("drift_prompts", drift_prompts, data=bench_data, benchmarks=d.benchmarks, prompts=d.prompts,
                  seed=d.seed)
    replies = run("generate:drift", generate, **generate_inputs(cfg, base, prompts, d.max_new_tokens, **NO_STOPS))
    return DriftText(prompts, replies)


def drift_from_base(run: StageRunner, cfg: ExperimentConfig, tag: str, base: Model, tuned: Model,
                    text: DriftText | None) -> Artifact | None:
    if text is None:
        return None
    if text.reference is None:
        text.reference = run("drift_reference", drift_reference, base=base.folder, prompts=text.prompts,
                             replies=text.replies, batch_size=cfg.drift.batch_size)
    return run(f"drift:{tag}", drift, base=base.folder, model=tuned.folder, prompts=text.prompts,
               replies=text.replies, batch_size=cfg.drift.batch_size, seed=cfg.drift.seed, reference=text.reference)


def train_and_evaluate_seed(run: StageRunner, cfg: ExperimentConfig, arm: str, seed: int, base: Model,
                            targets: Artifact, test: Artifact, judge_model: Model | None,
                            bench_data: Artifact | None, text: DriftText | None) -> SeedRun:
    """Steps 5-6 for one arm and training seed: LoRA adapter, merged model, evaluation, drift from base."""
    tag = arm if len(cfg.seeds) == 1 else f"{arm}:seed{seed}"
    adapter = run(f"train:{tag}", train, **train_inputs(cfg, base, targets, seed))
    merged = run(f"merge:{tag}", merge, model=base.folder, adapter=adapter,
                 dtype=stored_dtype(Path(base.folder.path)))  # engines cast base and arms alike
    # The model's name is the arm and its training seed, whatever the run's seed count, so a
    # single-seed run's answers are the seed-list run's answers for that seed (cache hits).
    tuned = Model(merged, f"{cfg.model.ref}+{arm}:seed{seed}")
    evaluation = evaluate(run, cfg, tag, tuned, test, judge_model, bench_data)
    return SeedRun(seed, adapter, evaluation, drift_from_base(run, cfg, tag, base, tuned, text))


def train_and_evaluate_arm(run: StageRunner, cfg: ExperimentConfig, arm: str, base: Model, evidence: TrainEvidence,
                           test: Artifact, judge_model: Model | None, bench_data: Artifact | None,
                           text: DriftText | None) -> ArmRun:
    """One arm: its targets by its strategy, then every training seed (generation and judging shared)."""
    settings = cfg.rft.for_judge(cfg.judge.name) if get_strategy(arm).reads_settings else None
    targets = run(f"targets:{arm}", make_targets, arm=arm, examples=evidence.examples, evidence=evidence.files(arm),
                  settings=settings)
    return ArmRun(arm, targets, tuple(train_and_evaluate_seed(run, cfg, arm, seed, base, targets, test, judge_model,
                                                              bench_data, text) for seed in cfg.seeds))


def familiarity_scores(run: StageRunner, cfg: ExperimentConfig, base: Model,
                       arms: list[ArmRun]) -> dict[str, dict[str, float]]:
    """Per arm and target source, the mean token log-prob of its targets under the base model."""
    if not (cfg.diagnostics.familiarity and arms):
        return {}
    scores = {}
    for a in arms:  # one stage per arm: adding an arm scores only its targets
        fam = run(f"familiarity:{a.arm}", familiarity, model=base.folder, targets={a.arm: a.targets},
                  max_per_source=cfg.diagnostics.familiarity_max_per_source, seed=cfg.diagnostics.seed)
        scores |= json.loads(Path(fam.path).read_text())
    return {arm: {s: v["mean_logprob"] for s, v in by_source.items()} for arm, by_source in scores.items()}


def run_experiment(cfg: ExperimentConfig, run: StageRunner) -> ExperimentRun:
    """The whole method on one config: every stage through `run`, cached and tracked."""
    base = Model(run("prepare_model", prepare_model, ref=cfg.model.ref, fingerprint=model_fingerprint(cfg.model.ref)),
                 cfg.model.ref)
    train_split = load_split(run, cfg, "train", cfg.data.train_size)
    test = load_split(run, cfg, "test", cfg.data.test_size)
    judge_model = llm_judge_model(run, cfg, base)
    evidence = answer_train_split(run, cfg, base, train_split, judge_model)
    mirror = cfg.data.mirror_path()
    bench_data = (run("benchmark_data", benchmark_data, mirror=str(mirror), files_hash=mirror_hash(mirror))
                  if (cfg.benchmarks.names or cfg.drift.enabled) and mirror is not None else None)
    text = drift_text(run, cfg, base, bench_data)
    base_run = ArmRun("base", None, (SeedRun(None, None, evaluate(run, cfg, "base", base, test, judge_model,
                                                                   bench_data)),))
    arms = [train_and_evaluate_arm(run, cfg, arm, base, evidence, test, judge_model, bench_data, text)
            for arm in cfg.trained_arms()]
    return ExperimentRun(base, (base_run, *arms), familiarity_scores(run, cfg, base, arms))
