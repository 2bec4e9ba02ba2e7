"""The S3FT experiment flow: base answers -> judge -> paraphrase -> targets -> LoRA -> evaluate -> report.

Every stage is a cached Prefect task over files (see tasks/cache.py); this module only wires them.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from flows.cli import prepare_environment
from flows.runner import StageRunner
from flows.mlflow_runs import close_killed_attempts, log_arms, run_tags
from judges import get_judge
from tasks.backends import release_backends
from tasks.benchmark import benchmark, benchmark_data, mirror_hash
from tasks.config import ExperimentConfig, load_config
from tasks.errors import InputError
from tasks.evaluate import merge, score
from tasks.familiarity import familiarity
from tasks.generate import generate
from tasks.judge import judge
from tasks.llm_judge import llm_judge_merge, llm_judge_prompts
from tasks.paraphrase import paraphrase_prompts
from tasks.prepare import load_split, model_fingerprint, prepare_model, source_fingerprint
from tasks.records import Artifact, write_text_atomic
from tasks.report import ArmResult, SeedResult, aggregate_seeds, general_drops, markdown_table, write_report
from tasks.strategies import get_strategy
from tasks.targets import collect_evidence, make_targets
from tasks.train import train
from tasks.tracking import Tracker


class _InputErrorsWithoutTraceback(logging.Filter):
    """Bad input (tasks.errors.InputError) is reported by its one-line message; a traceback adds only noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InputError):
            record.exc_info = record.exc_text = None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
    logging.getLogger(_name).addFilter(_InputErrorsWithoutTraceback())


def _answer_and_judge(run: StageRunner, cfg: ExperimentConfig, label: str, model: Artifact, model_ref: str,
                      examples: Artifact, max_new_tokens: int, min_length_ratio: float = 0.0,
                      judge_model: tuple[Artifact, str] | None = None) -> tuple[Artifact, Artifact]:
    """Generate with one model on one set of examples and judge the answers.

    A two-stage judge (QA) hands the answers its first stage did not accept to `judge_model`
    (artifact, reference): prompts, generation on the same backend, and the merged verdicts.
    """
    store = str(cfg.output_path() / "store")
    gens = run(f"generate:{label}", generate, files=("generations.jsonl",), model=model, model_ref=model_ref,
               dtype=cfg.model.dtype, examples=examples, settings=cfg.generation,
               max_new_tokens=max_new_tokens, store=store)
    j = get_judge(cfg.judge.name)
    verdicts = run(f"judge:{label}", judge, files=("verdicts.jsonl",), examples=examples, generations=gens,
                   judge_name=j.name, judge_version=j.version,
                   max_error_fraction=cfg.judge.max_error_fraction, store=store, min_length_ratio=min_length_ratio,
                   reject_truncated=cfg.judge.reject_truncated)
    if judge_model is not None:
        llm = cfg.judge.llm
        prompts = run(f"llm_judge_prompts:{label}", llm_judge_prompts, files=("examples.jsonl",), examples=examples,
                      generations=gens, verdicts=verdicts, template=llm.prompt, system_prompt=llm.system_prompt,
                      store=store)
        replies = run(f"generate:judge:{label}", generate, files=("generations.jsonl",), model=judge_model[0],
                      model_ref=judge_model[1], dtype=cfg.model.dtype, examples=prompts,
                      settings=cfg.generation.model_copy(update={"temperature": 0.0}),
                      max_new_tokens=llm.max_new_tokens, store=store)
        verdicts = run(f"llm_judge_merge:{label}", llm_judge_merge, files=("verdicts.jsonl",), verdicts=verdicts,
                       replies=replies, max_error_fraction=cfg.judge.max_error_fraction, store=store)
    return gens, verdicts


def judge_stages(verdicts: Artifact) -> dict[str, int]:
    """How many of a judging's verdicts each judge stage made (empty for one-stage judges)."""
    return {k: int(v) for k, v in verdicts.counts.items() if k.startswith("by_") or k == "llm_unparseable"}


def _judge_model(run: StageRunner, cfg: ExperimentConfig, model: Artifact) -> tuple[Artifact, str] | None:
    """The LLM judge's model when the task's judge has an LLM stage and it is enabled, else None."""
    if not (getattr(get_judge(cfg.judge.name), "llm_stage", False) and cfg.judge.llm.enabled):
        return None
    ref = cfg.judge.llm.model or cfg.model.ref
    if ref == cfg.model.ref:
        return model, ref
    return run("prepare_model:judge", prepare_model, ref=ref, fingerprint=model_fingerprint(ref),
               store=str(cfg.output_path() / "store")), ref


def _paraphrase_ids(cfg: ExperimentConfig, train: Artifact, own: Artifact | None,
                    own_verdicts: Artifact | None) -> list[str]:
    """Examples that any arm's strategy wants paraphrased (S3FT: the wrongly answered ones)."""
    strategies = [get_strategy(a) for a in cfg.arms if a != "base"]
    evidence = collect_evidence(train, own, own_verdicts, None, None)
    return sorted(ev.example.id for ev in evidence if any(s.paraphrase_when(ev) for s in strategies))


def _benchmarks(run: StageRunner, cfg: ExperimentConfig, label: str, model: Artifact, adapter: Artifact | None,
                data: Artifact | None) -> dict[str, float]:
    """lm-eval general benchmarks of base (adapter None) or one arm: `mmlu/acc`, `truthfulqa_mc2/acc`, ..."""
    if not (cfg.benchmarks.tasks or cfg.benchmarks.extra_tasks):
        return {}
    art = run(f"benchmark:{label}", benchmark, files=("metrics.json", "results.json", "samples"), model=model,
              adapter=adapter, data=data, settings=cfg.benchmarks, dtype=cfg.model.dtype,
              store=str(cfg.output_path() / "store"))
    return json.loads(Path(art.path).read_text())


def run_experiment(cfg: ExperimentConfig, run: StageRunner) -> list[ArmResult]:
    store = str(cfg.output_path() / "store")
    model = run("prepare_model", prepare_model, ref=cfg.model.ref, fingerprint=model_fingerprint(cfg.model.ref),
                store=store)
    splits = {}
    for split, size in (("train", cfg.data.train_size), ("test", cfg.data.test_size)):
        splits[split] = run(f"load_examples:{split}", load_split, files=("examples.jsonl",), data=cfg.data,
                            split=split, size=size, source_hash=source_fingerprint(cfg.data, split), store=store)
    train_examples, test = splits["train"], splits["test"]
    trained_arms = [a for a in cfg.arms if a != "base"]
    judge_model = _judge_model(run, cfg, model)

    # 1-4: the base model answers, is judged, and paraphrases gold where a strategy asks for it.
    own = own_v = para = para_v = None
    if any(get_strategy(a).needs_generation for a in trained_arms):
        own, own_v = _answer_and_judge(run, cfg, "train", model, cfg.model.ref, train_examples,
                                       cfg.generation.max_new_tokens, judge_model=judge_model)
    ids = _paraphrase_ids(cfg, train_examples, own, own_v)
    if ids:
        prompts = run("paraphrase_prompts", paraphrase_prompts, files=("examples.jsonl",), examples=train_examples,
                      example_ids=ids, template=cfg.paraphrase.prompt, system_prompt=cfg.data.system_prompt,
                      store=store)
        para, para_v = _answer_and_judge(run, cfg, "paraphrase", model, cfg.model.ref, prompts,
                                         cfg.paraphrase.max_new_tokens, cfg.paraphrase.min_length_ratio,
                                         judge_model=judge_model)
    # Base evaluation while the base engine is still up.
    results: list[ArmResult] = []
    _, base_v = _answer_and_judge(run, cfg, "test:base", model, cfg.model.ref, test, cfg.evaluation.max_new_tokens,
                                  judge_model=judge_model)
    base_scores = score(cfg.model.ref, "test", base_v)
    release_backends()
    bench_data = None
    mirror = cfg.data.mirror_path()
    if cfg.benchmarks.tasks and mirror is not None:
        bench_data = run("benchmark_data", benchmark_data, mirror=str(mirror), files_hash=mirror_hash(mirror),
                         store=store)
    results.append(ArmResult(arm="base", accuracy=base_scores.metrics["accuracy"],
                             stderr=base_scores.stderr["accuracy"], n=base_scores.n, judged=judge_stages(base_v),
                             general=_benchmarks(run, cfg, "base", model, None, bench_data)))

    # 5-6: per arm, targets -> LoRA adapter -> merged model -> test answers.
    logged: list[tuple] = []
    seeds = cfg.seeds or [cfg.training.seed]
    for arm in trained_arms:
        targets = run(f"targets:{arm}", make_targets, files=("targets.jsonl",), arm=arm, examples=train_examples, own=own,
                      own_verdicts=own_v, paraphrases=para, paraphrase_verdicts=para_v, store=store)
        counts = {k: int(targets.counts.get(k, 0)) for k in ("self", "paraphrase", "gold")}
        per_seed: list[SeedResult] = []
        judged: Counter[str] = Counter()
        for seed in seeds:  # generation, judging and paraphrasing above are shared by every seed
            tag = arm if len(seeds) == 1 else f"{arm}:seed{seed}"
            adapter = run(f"train:{tag}", train, model=model, targets=targets, lora=cfg.lora,
                          settings=cfg.training.model_copy(update={"seed": seed}), store=store)
            merged = run(f"merge:{tag}", merge, model=model, adapter=adapter, dtype=cfg.model.dtype, store=store)
            # The model's name is the arm and its training seed, whatever the run's seed count, so a
            # single-seed run's answers are the seed-list run's answers for that seed (cache hits).
            name = f"{cfg.model.ref}+{arm}:seed{seed}"
            _, verdicts = _answer_and_judge(run, cfg, f"test:{tag}", merged, name, test, cfg.evaluation.max_new_tokens,
                                            judge_model=judge_model)
            release_backends()
            judged.update(judge_stages(verdicts))
            s = score(name, "test", verdicts)
            per_seed.append(SeedResult(seed=seed, accuracy=s.metrics["accuracy"], stderr=s.stderr["accuracy"],
                                       n=s.n, train=dict(adapter.counts),
                                       general=_benchmarks(run, cfg, tag, model, adapter, bench_data)))
        results.append(aggregate_seeds(arm, per_seed, counts))
        results[-1].judged = dict(judged)
        results[-1].drops = general_drops(results[0].general, results[-1].general)
        logged.append((arm, results[-1], targets, adapter, verdicts))
    if cfg.diagnostics.familiarity and logged:
        fam = run("familiarity", familiarity, files=("familiarity.json",), model=model,
                  targets={arm: t for arm, _, t, _, _ in logged},
                  max_per_source=cfg.diagnostics.familiarity_max_per_source, seed=cfg.diagnostics.seed, store=store)
        scores = json.loads(Path(fam.path).read_text())
        for arm, result, *_ in logged:
            result.familiarity = {s: v["mean_logprob"] for s, v in scores.get(arm, {}).items()}
    log_arms(run, cfg, model, logged + [("base", results[0], None, None, base_v)])
    return results


@flow(name="s3ft-experiment")
def experiment(config_path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run one S3FT experiment from a YAML config plus `key=value` overrides."""
    cfg = load_config(config_path, overrides)
    prepare_environment(cfg)  # a deployment's worker process did not come through the CLI
    log = get_run_logger()
    start = time.perf_counter()
    run_name = f"{cfg.name}-{flow_run.get_name() or 'local'}"
    run_dir = cfg.output_path() / cfg.name / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(cfg.tracking_uri(), cfg.tracking.experiment, cfg.output_path() / "mlartifacts",
                      tags=run_tags(cfg, config_path))
    close_killed_attempts(tracker, log)
    runner = StageRunner(tracker, log, results=cfg.output_path() / "prefect-results")
    tags = {"prefect_flow_run_id": str(flow_run.get_id() or "")}
    with tracker.parent(run_name, cfg.model_dump(mode="json"), tags) as parent_id:
        try:
            results = run_experiment(cfg, runner)
        finally:
            release_backends()
            write_text_atomic(run_dir / "stages.json", json.dumps(runner.summary(), indent=1))
        paths = write_report(cfg.data.task, results, run_dir)
        table = markdown_table(cfg.data.task, results)
        wall = time.perf_counter() - start
        summary = {"run_dir": str(run_dir), "mlflow_run_id": parent_id, "wall_seconds": round(wall, 1),
                   "generations_performed": runner.generations_performed(),
                   "stages": runner.summary(), "results": [r.model_dump() for r in results],
                   "report": {k: str(v) for k, v in paths.items()}}
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=1))
        tracker.metrics({"flow/wall_seconds": wall, "flow/generations_performed": summary["generations_performed"],
                         "flow/cache_hits": sum(c.cached for c in runner.calls),
                         "flow/stages": len(runner.calls)})
        for p in list(paths.values()) + [run_dir / "summary.json", run_dir / "stages.json"]:
            tracker.log_path(p, "report")
    create_markdown_artifact(markdown=table, key="s3ft-report", description=f"{cfg.name}: {run_dir}")
    hits = [c.label for c in runner.calls if c.cached]
    log.info("done in %.0f s; %d generations performed; cache hits: %s", wall, summary["generations_performed"],
             ", ".join(hits) or "none")
    return summary
