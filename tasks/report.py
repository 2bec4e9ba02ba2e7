"""The comparison report: a markdown table, a PNG people look at, and a JSON for machines."""
from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.records import write_text_atomic


class SeedResult(BaseModel):
    """One training seed of one arm."""

    seed: int
    accuracy: float
    stderr: float
    n: int
    train: dict[str, float] = Field(default_factory=dict)
    general: dict[str, float] = Field(default_factory=dict)


class ArmResult(BaseModel):
    arm: str
    accuracy: float
    stderr: float
    n: int
    targets: dict[str, int] = Field(default_factory=dict)
    """self / paraphrase / gold counts (empty for base)."""
    train: dict[str, float] = Field(default_factory=dict)
    general: dict[str, float] = Field(default_factory=dict)
    """lm-eval scores: `mmlu/acc`, `mmlu/acc_stderr`, `truthfulqa_mc1/acc`, ... (empty when not run)."""
    drops: dict[str, float] = Field(default_factory=dict)
    """Points lost versus base per benchmark (`mmlu/drop`) and their mean (`general/avg_drop`)."""
    familiarity: dict[str, float] = Field(default_factory=dict)
    """Mean per-token log-prob of this arm's targets under the base model, by source (self/paraphrase/gold)."""
    judged: dict[str, int] = Field(default_factory=dict)
    """Test verdicts made by each stage of a two-stage judge (QA): by_normalized, by_llm, by_precheck,
    llm_unparseable; summed over seeds. Empty for one-stage judges."""
    seeds: list[SeedResult] = Field(default_factory=list)
    """Per training seed, when an arm was trained with several: the scores above are their mean, and
    the stderrs the spread across seeds (std / sqrt(k))."""


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    k = len(values)
    mean = sum(values) / k
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1) / k) if k > 1 else float("nan")


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


def benchmark_names(general: dict[str, float]) -> list[str]:
    return [k.removesuffix("/acc") for k in general if k.endswith("/acc")]


def general_drops(base: dict[str, float], arm: dict[str, float]) -> dict[str, float]:
    """Drop in points (base minus arm, x100) per general benchmark and the average drop (the paper's headline)."""
    names = [n for n in benchmark_names(arm) if f"{n}/acc" in base]
    drops = {f"{n}/drop": 100 * (base[f"{n}/acc"] - arm[f"{n}/acc"]) for n in names}
    if drops:
        drops["general/avg_drop"] = sum(drops.values()) / len(drops)
    return drops


def metric_name(task: str) -> str:
    """What the in-domain score is called: pass@1 (greedy, one sample) for code tasks."""
    return "pass@1" if task.startswith(("mbpp", "humaneval")) else "accuracy"


ARM_COLORS = {"base": "#888888", "sft": "#1f77b4", "sdft": "#9467bd", "s3ft": "#2ca02c"}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown_table(task: str, results: list[ArmResult]) -> str:
    base = next((r for r in results if r.arm == "base"), None)
    lines = [f"### {task}: in-domain {metric_name(task)} and training-target mix",
             "",
             f"| arm | {metric_name(task)} % | ± stderr | Δ vs base | n | self | paraphrase | gold |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        delta = "" if base is None or r.arm == "base" else f"{100 * (r.accuracy - base.accuracy):+.1f}"
        mix = [str(r.targets.get(k, "")) if r.targets else "" for k in ("self", "paraphrase", "gold")]
        n = f"{r.n} x {len(r.seeds)} seeds" if r.seeds else str(r.n)
        lines.append(f"| {r.arm} | {_pct(r.accuracy)} | {_pct(r.stderr)} | {delta} | {n} | " + " | ".join(mix) + " |")
    if any(r.seeds for r in results):
        lines += ["", "Arms trained with several seeds show the mean over seeds and its stderr across seeds."]
    names = benchmark_names(base.general) if base is not None else []
    if names:
        lines += ["", "### General benchmarks (lm-eval): score % ± stderr, and the drop versus base "
                  "(points; lower is better)", "",
                  "| arm | " + " | ".join(names) + " | " + " | ".join(f"{n} drop" for n in names) + " | avg drop |",
                  "|---|" + "---:|" * (2 * len(names) + 1)]
        for r in results:
            scores = [f"{_pct(r.general[f'{n}/acc'])} ± {_pct(r.general.get(f'{n}/acc_stderr', float('nan')))}"
                      if f"{n}/acc" in r.general else "" for n in names]
            drops = [f"{r.drops[f'{n}/drop']:+.1f}" if f"{n}/drop" in r.drops else "" for n in names]
            avg = f"{r.drops['general/avg_drop']:+.1f}" if "general/avg_drop" in r.drops else ""
            lines.append(f"| {r.arm} | " + " | ".join(scores) + " | " + " | ".join(drops) + f" | {avg} |")
    judged = [r for r in results if r.judged]
    if judged:
        lines += ["", "### Judge: test verdicts decided by each stage (normalized match, then LLM judge)", "",
                  "| arm | normalized | llm | precheck | llm unparseable |", "|---|---:|---:|---:|---:|"]
        for r in judged:
            cells = [str(r.judged.get(k, 0)) for k in ("by_normalized", "by_llm", "by_precheck", "llm_unparseable")]
            lines.append(f"| {r.arm} | " + " | ".join(cells) + " |")
    familiar = [r for r in results if r.familiarity]
    if familiar:
        lines += ["", "### Familiarity: mean per-token log-prob of the training targets under the base model "
                  "(higher = closer to the model's own distribution)", "",
                  "| arm | self | paraphrase | gold |", "|---|---:|---:|---:|"]
        for r in familiar:
            cells = [f"{r.familiarity[s]:.3f}" if s in r.familiarity else "" for s in ("self", "paraphrase", "gold")]
            lines.append(f"| {r.arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(task: str, results: list[ArmResult], path: Path) -> Path:
    """Left: accuracy per arm with stderr bars. Right: where each trained arm's targets came from."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = benchmark_names(results[0].general) if results else []
    fig, axes = plt.subplots(1, 3 if names else 2, figsize=(15 if names else 10, 4))
    ax1, ax2 = axes[0], axes[1]
    arms = [r.arm for r in results]
    colors = [ARM_COLORS.get(a, "#17becf") for a in arms]
    ax1.bar(arms, [100 * r.accuracy for r in results], yerr=[100 * r.stderr for r in results],
            capsize=6, color=colors)
    for i, r in enumerate(results):
        ax1.text(i, 100 * r.accuracy + 100 * r.stderr + 0.5, _pct(r.accuracy), ha="center")
    tops = [100 * (r.accuracy + r.stderr) for r in results] or [1.0]
    ax1.set_ylim(0, max(max(tops) * 1.25, 1.0))  # room for the value labels under the title
    ax1.set_ylabel(f"{metric_name(task)} (%)")
    ax1.set_title(f"{task} test {metric_name(task)} (n={results[0].n if results else 0})")
    trained = [r for r in results if r.targets]
    bottom = [0.0] * len(trained)
    for source, color in (("self", "#2ca02c"), ("paraphrase", "#ff7f0e"), ("gold", "#d62728")):
        values = [100 * r.targets.get(source, 0) / max(1, sum(r.targets.values())) for r in trained]
        ax2.bar([r.arm for r in trained], values, bottom=bottom, label=source, color=color)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax2.set_ylabel("% of training targets")
    ax2.set_title("target source")
    ax2.legend(loc="upper right", fontsize=8)
    if names:
        ax3 = axes[2]
        width = 0.8 / len(results)
        for i, r in enumerate(results):
            xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(names))]
            ax3.bar(xs, [100 * r.general.get(f"{n}/acc", 0) for n in names], width,
                    yerr=[_finite(100 * r.general.get(f"{n}/acc_stderr", 0.0)) for n in names],
                    capsize=3, label=r.arm + (f" (avg drop {r.drops['general/avg_drop']:+.1f})"
                                              if "general/avg_drop" in r.drops else ""), color=colors[i])
        ax3.set_xticks(range(len(names)), names, fontsize=8)
        ax3.set_ylabel("score (%)")
        ax3.set_title("general benchmarks (lm-eval)")
        ax3.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(task: str, results: list[ArmResult], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    write_text_atomic(md, markdown_table(task, results))
    js = out_dir / "report.json"
    write_text_atomic(js, json.dumps([r.model_dump() for r in results], indent=1))
    return {"markdown": md, "json": js, "plot": plot(task, results, out_dir / "report.png")}
