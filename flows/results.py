"""What an experiment produced, as frozen records, and the report's numbers assembled from them.

The DAG (flows/dag.py) returns `ArmRun`s: per arm its targets and, per training seed, its adapter and
`Evaluation`. `assemble` turns them into one `ArmResult` row per arm (seed means and stderrs, target
mix, drops versus base, familiarity) in a pure function: nothing is mutated after it is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.records import Artifact, Scores
from tasks.core.statistics import Interval


@dataclass(frozen=True)
class Answers:
    """One model's answers to one set of examples and their final verdicts."""

    generations: Artifact
    verdicts: Artifact


@dataclass(frozen=True)
class Evaluation:
    """One model's scores: in-domain accuracy from its test verdicts, and the general benchmarks."""

    verdicts: Artifact
    scores: Scores
    judged: dict[str, int]
    """Test verdicts per judge step (two-step judges): by_normalized, by_llm, by_precheck, llm_unparseable."""
    general: dict[str, float]
    """lm-eval scores: `mmlu/acc`, `mmlu/acc_stderr`, ... (empty when benchmarks are off)."""
    benchmark: Artifact | None = None
    """The benchmark stage's metrics.json; its folder holds lm-eval's per-sample logs (`samples/`)."""


@dataclass(frozen=True)
class SeedRun:
    """One training seed of one arm (the base arm: one run without seed or adapter)."""

    seed: int | None
    adapter: Artifact | None
    evaluation: Evaluation
    drift: Artifact | None = None
    """The drift stage's drift.json (per-prompt values in drift_items.jsonl beside it); None for base."""


@dataclass(frozen=True)
class ArmRun:
    arm: str
    targets: Artifact | None
    """The arm's training targets (None for base)."""
    seeds: tuple[SeedRun, ...]


class Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class Delta(Row):
    """A paired difference (arm minus reference) with its 95 % CI; `p` is McNemar's for binary scores."""

    estimate: float
    low: float
    high: float
    n: int
    p: float | None = None

    @classmethod
    def of(cls, interval: Interval, p: float | None = None) -> "Delta":
        return cls(estimate=interval.estimate, low=interval.low, high=interval.high, n=interval.n, p=p)

    def fmt(self, scale: float = 100.0, digits: int = 1) -> str:
        """`+1.2 [-0.4, +2.8]` in points (x100) by default; `n/a` without items."""
        return Interval(self.estimate, self.low, self.high, self.n).fmt(scale, digits)


class Comparison(Row):
    """One arm against a reference (base or sft) for one training seed, or across seeds (seed None)."""

    arm: str
    reference: str
    seed: int | None
    deltas: dict[str, Delta] = Field(default_factory=dict)
    """`indomain/accuracy`, `<benchmark>/acc` per benchmark, `general/avg` (their mean), `drift/kl`."""


class SeedResult(Row):
    """One training seed of one arm, as reported."""

    seed: int | None
    accuracy: float
    stderr: float
    n: int
    train: dict[str, float] = Field(default_factory=dict)
    general: dict[str, float] = Field(default_factory=dict)


class ArmResult(Row):
    """One arm's row of the report."""

    arm: str
    accuracy: float
    stderr: float
    n: int
    targets: dict[str, int] = Field(default_factory=dict)
    """Training sequences by source (self / paraphrase / gold), examples `dropped` (no target) and sequences
    trained on (`n`; several per example for rft); empty for base."""
    train: dict[str, float] = Field(default_factory=dict)
    general: dict[str, float] = Field(default_factory=dict)
    """lm-eval scores: `mmlu/acc`, `mmlu/acc_stderr`, `truthfulqa_mc1/acc`, ... (empty when not run)."""
    drops: dict[str, float] = Field(default_factory=dict)
    """Points lost versus base per benchmark (`mmlu/drop`) and their mean (`general/avg_drop`)."""
    familiarity: dict[str, float] = Field(default_factory=dict)
    """Mean per-token log-prob of this arm's targets under the base model, by source (self/paraphrase/gold)."""
    judged: dict[str, int] = Field(default_factory=dict)
    """Test verdicts made by each step of a two-step judge (QA): by_normalized, by_llm, by_precheck,
    llm_unparseable; summed over seeds. Empty for one-step judges."""
    seeds: list[SeedResult] = Field(default_factory=list)
    """Per training seed, when an arm was trained with several: the scores above are their mean, and
    the stderrs the spread across seeds (std / sqrt(k))."""
    vs_base: dict[str, Delta] = Field(default_factory=dict)
    """Paired differences from base over the same items (across seeds when several; flows/comparisons.py)."""
    vs_sft: dict[str, Delta] = Field(default_factory=dict)
    """The same against sft (for trained arms other than sft, when the experiment has sft)."""
    drift: dict[str, float] = Field(default_factory=dict)
    """Drift from base on general text: `kl` with `kl_ci_low`/`kl_ci_high`, `logprob_delta` (mean over seeds)."""


TARGET_COUNTS = ("self", "paraphrase", "gold", "dropped", "n")


def benchmark_names(general: dict[str, float]) -> list[str]:
    return [k.removesuffix("/acc") for k in general if k.endswith("/acc")]


def general_drops(base: dict[str, float], arm: dict[str, float]) -> dict[str, float]:
    """Drop in points (base minus arm, x100) per general benchmark and the average drop (the paper's headline)."""
    names = [n for n in benchmark_names(arm) if f"{n}/acc" in base]
    drops = {f"{n}/drop": 100 * (base[f"{n}/acc"] - arm[f"{n}/acc"]) for n in names}
    if drops:
        drops["general/avg_drop"] = sum(drops.values()) / len(drops)
    return drops


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    k = len(values)
    mean = sum(values) / k
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k) if k > 1 else float("nan")


def seed_result(run: SeedRun) -> SeedResult:
    scores = run.evaluation.scores
    return SeedResult(seed=run.seed, accuracy=scores.metrics["accuracy"],
                      stderr=scores.stderr["accuracy"], n=scores.n,
                      train=dict(run.adapter.counts) if run.adapter else {}, general=run.evaluation.general)


def aggregate_seeds(arm: str, per_seed: list[SeedResult], targets: dict[str, int]) -> ArmResult:
    """One arm's result: the single seed's scores, or with several seeds their mean ± stderr across seeds."""
    if len(per_seed) == 1:
        r = per_seed[0]
        return ArmResult(arm=arm, accuracy=r.accuracy, stderr=r.stderr, n=r.n, targets=targets, train=r.train,
                         general=r.general)
    accuracy, stderr = _mean_stderr([r.accuracy for r in per_seed])
    general: dict[str, float] = {}
    for name in benchmark_names(per_seed[0].general):
        general[f"{name}/acc"], general[f"{name}/acc_stderr"] = _mean_stderr(
            [r.general[f"{name}/acc"] for r in per_seed])
    train = {k: sum(r.train.get(k, 0.0) for r in per_seed) / len(per_seed) for k in per_seed[0].train}
    return ArmResult(arm=arm, accuracy=accuracy, stderr=stderr, n=per_seed[0].n, targets=targets, train=train,
                     general=general, seeds=per_seed)


def _overall(comps: list[Comparison], arm: str, reference: str) -> dict[str, Delta]:
    """The across-seeds comparison when there is one, else the single seed's."""
    mine = [c for c in comps if c.arm == arm and c.reference == reference]
    chosen = next((c for c in mine if c.seed is None), mine[0] if len(mine) == 1 else None)
    return dict(chosen.deltas) if chosen else {}


def _drift(run: ArmRun, vs_base: dict[str, Delta]) -> dict[str, float]:
    seeds = [s.drift.counts for s in run.seeds if s.drift is not None]
    if not seeds or "drift/kl" not in vs_base:
        return {}
    kl = vs_base["drift/kl"]
    return {"kl": kl.estimate, "kl_ci_low": kl.low, "kl_ci_high": kl.high,
            "logprob_delta": sum(d.get("logprob_delta", float("nan")) for d in seeds) / len(seeds)}


def arm_result(run: ArmRun, base_general: dict[str, float], familiarity: dict[str, float],
               comps: list[Comparison]) -> ArmResult:
    """One arm's report row: seeds aggregated, its drops and paired differences versus base (and sft), its
    drift, its targets' familiarity."""
    targets = {k: int(run.targets.counts.get(k, 0)) for k in TARGET_COUNTS} if run.targets else {}
    row = aggregate_seeds(run.arm, [seed_result(s) for s in run.seeds], targets)
    judged: dict[str, int] = {}
    for s in run.seeds:
        for k, v in s.evaluation.judged.items():
            judged[k] = judged.get(k, 0) + v
    drops = general_drops(base_general, row.general) if run.targets is not None else {}
    vs_base = _overall(comps, run.arm, "base")
    return row.model_copy(update={"judged": judged, "drops": drops, "familiarity": familiarity,
                                  "vs_base": vs_base, "vs_sft": _overall(comps, run.arm, "sft"),
                                  "drift": _drift(run, vs_base)})


def assemble(runs: list[ArmRun], familiarity: dict[str, dict[str, float]],
             comps: list[Comparison] | None = None) -> list[ArmResult]:
    """The report's rows, base first: what the table, the plot, MLflow and summary.json show."""
    base = next(r for r in runs if r.arm == "base")
    base_general = base.seeds[0].evaluation.general
    return [arm_result(r, base_general, familiarity.get(r.arm, {}), comps or []) for r in runs]


def metric_name(source: str) -> str:
    """What the in-domain score is called: pass@1 (greedy, one sample) for code sources."""
    return "pass@1" if source.startswith(("mbpp", "humaneval")) else "accuracy"
