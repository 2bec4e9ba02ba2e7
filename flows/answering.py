"""A model answers a set of examples and the data source's judge decides: the generation and judging
stages every part of the DAG shares (train answers, samples, paraphrases, test answers, the LLM judge)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.results import Answers
from flows.runner import StageRunner
from judges import get_judge
from tasks.core.config import ExperimentConfig
from tasks.core.records import Artifact
from tasks.core.settings import VllmSettings
from tasks.engines.models import model_fingerprint
from tasks.generate import generate
from tasks.judge import judge
from tasks.llm_judge_merge import llm_judge_merge
from tasks.llm_judge_prompts import llm_judge_prompts
from tasks.prepare_model import prepare_model
from tasks.sample_examples import sample_examples


@dataclass(frozen=True)
class Model:
    """A model folder and the name its answers carry."""

    folder: Artifact
    ref: str


def generation_vllm(cfg: ExperimentConfig) -> VllmSettings | None:
    """The vLLM settings when generation runs on vLLM (they are then part of its cache key)."""
    return cfg.vllm if cfg.generation.resolved().backend == "vllm" else None


NO_STOPS = {"temperature": 0.0, "stop": [], "repetition_stop": None}
"""Generation that is not an answer to the task (the LLM judge's verdicts, drift's general-text replies):
greedy, and the task's stop settings do not apply."""


def generate_inputs(cfg: ExperimentConfig, model: Model, examples: Artifact, max_new_tokens: int,
                    **settings: Any) -> dict[str, Any]:
    """The generate stage's inputs; `settings` overrides generation settings (the LLM judge: greedy; a
    sampling stage: `samples` and its temperature). One answer per prompt unless `samples` says otherwise; the
    section's own cap is set to the one used, so the key holds no unused value."""
    update = {"samples": 1, **settings, "max_new_tokens": max_new_tokens}
    return dict(model=model.folder, model_ref=model.ref, dtype=cfg.model.resolved().dtype, examples=examples,
                settings=cfg.generation.model_copy(update=update), vllm=generation_vllm(cfg),
                max_new_tokens=max_new_tokens)


def judge_steps(verdicts: Artifact) -> dict[str, int]:
    """How many of a judging's verdicts each judge step made (empty for one-step judges)."""
    return {k: int(v) for k, v in verdicts.counts.items() if k.startswith("by_") or k == "llm_unparseable"}


def llm_judge(run: StageRunner, cfg: ExperimentConfig, label: str, examples: Artifact, generations: Artifact,
              verdicts: Artifact, judge_model: Model) -> Artifact:
    """Step 2 of a two-step judge: the judge model decides the answers step 1 deferred."""
    llm = cfg.judge.llm
    prompts = run(f"llm_judge_prompts:{label}", llm_judge_prompts, examples=examples, generations=generations,
                  verdicts=verdicts, template=llm.prompt, system_prompt=llm.system_prompt)
    replies = run(f"generate:judge:{label}", generate,
                  **generate_inputs(cfg, judge_model, prompts, llm.max_new_tokens, **NO_STOPS))
    return run(f"llm_judge_merge:{label}", llm_judge_merge, verdicts=verdicts, replies=replies,
               max_error_fraction=cfg.judge.max_error_fraction)


def answer_and_judge(run: StageRunner, cfg: ExperimentConfig, label: str, model: Model, examples: Artifact,
                     max_new_tokens: int, judge_model: Model | None, min_length_ratio: float = 0.0,
                     samples: int = 1) -> Answers:
    """One model answers one set of examples; the data source's judge (and its LLM step) decides. With
    `samples` = k > 1: k answers per example from one request each, at generation.sample_temperature,
    judged one by one against per-sample copies of the examples."""
    sampling = {"samples": samples, "temperature": cfg.generation.sample_temperature} if samples > 1 else {}
    generations = run(f"generate:{label}", generate,
                      **generate_inputs(cfg, model, examples, max_new_tokens, **sampling))
    if samples > 1:
        examples = run(f"sample_examples:{label}", sample_examples, examples=examples, samples=samples)
    j = get_judge(cfg.judge.name, cfg.judge.params())
    verdicts = run(f"judge:{label}", judge, examples=examples, generations=generations, judge_name=j.name,
                   judge_version=j.version, max_error_fraction=cfg.judge.max_error_fraction,
                   min_length_ratio=min_length_ratio, reject_truncated=cfg.judge.reject_truncated,
                   judge_params=cfg.judge.params())
    if judge_model is not None:
        verdicts = llm_judge(run, cfg, label, examples, generations, verdicts, judge_model)
    return Answers(generations, verdicts)


def llm_judge_model(run: StageRunner, cfg: ExperimentConfig, base: Model) -> Model | None:
    """The LLM judge's model when the data source's judge has an LLM step and it is enabled."""
    if not (getattr(get_judge(cfg.judge.name), "llm_step", False) and cfg.judge.llm.enabled):
        return None
    ref = cfg.judge.llm.model or cfg.model.ref
    if ref == cfg.model.ref:
        return base
    return Model(run("prepare_model:judge", prepare_model, ref=ref, fingerprint=model_fingerprint(ref)), ref)
