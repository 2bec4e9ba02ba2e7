"""Paired comparisons between arms over the same items, per training seed and across seeds.

Item scores: in-domain (1 for each correct test verdict, by example), each benchmark (lm-eval's per-sample
`acc`, by document), drift (per-prompt KL from base). Every trained arm is compared with base, and with
sft when the experiment has it (s3ft vs sft is the paper's comparison). Each difference is the mean over
the items both sides scored, arm minus reference, with a 95 % paired-bootstrap CI; binary scores get
McNemar's exact p. Across seeds, an item's score is its mean over the seeds: the CI then covers the
item sampling given these training seeds, not the variation a new seed would bring (the per-seed rows
show that).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flows.results import ArmRun, Comparison, Delta, SeedRun
from tasks.core.records import Verdict, read_jsonl
from tasks.core.statistics import Interval, bootstrap_mean, mcnemar_exact, paired_average, paired_difference

Scores = dict[str, float]


@dataclass(frozen=True)
class ItemScores:
    """One model's per-item scores."""

    indomain: Scores
    benchmarks: dict[str, Scores] = field(default_factory=dict)
    drift: Scores | None = None
    """Per-prompt KL from base (base itself: None, meaning 0 everywhere)."""


def _benchmark_items(metrics: Path) -> dict[str, Scores]:
    """lm-eval's per-sample `acc` by benchmark. MMLU's 57 subject files are one benchmark (items keyed by
    subject and document); TruthfulQA MC1 and MC2 key their items by the question they share, so their
    average resamples the questions once (statistics.paired_average)."""
    out: dict[str, Scores] = {}
    for path in sorted((metrics.parent / "samples").glob("*.jsonl")):
        name = "mmlu" if path.stem.startswith("mmlu_") else path.stem
        prefix = "truthfulqa" if name.startswith("truthfulqa_mc") else path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "acc" in row:
                out.setdefault(name, {})[f"{prefix}:{row['doc_id']}"] = float(row["acc"])
    return out


def item_scores(run: SeedRun) -> ItemScores:
    """Read one model's per-item scores from its stages' files."""
    ev = run.evaluation
    indomain = {v.example_id: float(v.outcome == "correct") for v in read_jsonl(Path(ev.verdicts.path), Verdict)}
    benchmarks = _benchmark_items(Path(ev.benchmark.path)) if ev.benchmark else {}
    drift = None
    if run.drift is not None:
        rows = (Path(run.drift.path).parent / "drift_items.jsonl").read_text().splitlines()
        drift = {r["id"]: r["kl"] for r in map(json.loads, rows)}
    return ItemScores(indomain, benchmarks, drift)


def mean_over_seeds(scores: list[ItemScores]) -> ItemScores:
    """Each item's score averaged over the seeds; items not scored by every seed are left out."""
    def avg(maps: list[Scores]) -> Scores:
        keys = sorted(set.intersection(*(set(m) for m in maps)), key=str)
        return {k: sum(m[k] for m in maps) / len(maps) for k in keys}

    names = set.intersection(*(set(s.benchmarks) for s in scores))
    drifts = [s.drift for s in scores if s.drift is not None]
    return ItemScores(avg([s.indomain for s in scores]), {n: avg([s.benchmarks[n] for s in scores]) for n in names},
                      avg(drifts) if len(drifts) == len(scores) else None)


def _binary(*maps: Scores) -> bool:
    return all(v in (0.0, 1.0) for m in maps for v in m.values())


def compare(arm: ItemScores, ref: ItemScores, seed: int = 0, ref_is_base: bool = False) -> dict[str, Delta]:
    """Every paired difference of `arm` minus `ref` over their common items (base's drift is 0 everywhere)."""
    binary = _binary(ref.indomain, arm.indomain)  # seed means are not: McNemar needs 0/1 scores
    deltas = {"indomain/accuracy": Delta.of(paired_difference(ref.indomain, arm.indomain, seed),
                                            mcnemar_exact(ref.indomain, arm.indomain) if binary else None)}
    names = sorted(set(arm.benchmarks) & set(ref.benchmarks))
    for name in names:
        a, r = arm.benchmarks[name], ref.benchmarks[name]
        deltas[f"{name}/acc"] = Delta.of(paired_difference(r, a, seed), mcnemar_exact(r, a) if _binary(a, r) else None)
    if names:
        deltas["general/avg"] = Delta.of(paired_average([(ref.benchmarks[n], arm.benchmarks[n]) for n in names], seed))
    if arm.drift is not None and ref_is_base:
        deltas["drift/kl"] = Delta.of(bootstrap_mean([arm.drift[k] for k in sorted(arm.drift)], seed))
    elif arm.drift is not None and ref.drift is not None:
        deltas["drift/kl"] = Delta.of(paired_difference(ref.drift, arm.drift, seed))
    return deltas


def comparisons(runs: list[ArmRun], seed: int = 0) -> list[Comparison]:
    """Each trained arm vs base, and vs sft when there is one: per seed, and across seeds when several."""
    items = {(r.arm, s.seed): item_scores(s) for r in runs for s in r.seeds}
    base = items[("base", None)]
    seeds = {r.arm: [s.seed for s in r.seeds] for r in runs if r.targets is not None}
    out = []
    for arm, arm_seeds in seeds.items():
        refs = ["base"] + (["sft"] if "sft" in seeds and arm != "sft" else [])
        for reference in refs:
            for k in arm_seeds:
                ref = base if reference == "base" else items[(reference, k)]
                out.append(Comparison(arm=arm, reference=reference, seed=k,
                                      deltas=compare(items[(arm, k)], ref, seed, reference == "base")))
            if len(arm_seeds) > 1:
                mine = mean_over_seeds([items[(arm, k)] for k in arm_seeds])
                ref = base if reference == "base" else mean_over_seeds([items[(reference, k)] for k in seeds[reference]])
                out.append(Comparison(arm=arm, reference=reference, seed=None,
                                      deltas=compare(mine, ref, seed, reference == "base")))
    return out
