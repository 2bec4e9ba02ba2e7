"""The comparison report: a markdown table, a PNG people look at, and a JSON for machines."""
from __future__ import annotations

import json
import math
from pathlib import Path

from flows.results import ArmResult, benchmark_names
from tasks.core.records import write_text_atomic


def metric_name(source: str) -> str:
    """What the in-domain score is called: pass@1 (greedy, one sample) for code sources."""
    return "pass@1" if source.startswith(("mbpp", "humaneval")) else "accuracy"


ARM_COLORS = {"base": "#888888", "sft": "#1f77b4", "sdft": "#9467bd", "s3ft": "#2ca02c"}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown_table(source: str, results: list[ArmResult]) -> str:
    base = next((r for r in results if r.arm == "base"), None)
    lines = [f"### {source}: in-domain {metric_name(source)} and training-target mix",
             "",
             f"| arm | {metric_name(source)} % | ± stderr | Δ vs base | n | self | paraphrase | gold |",
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
        lines += ["", "### Judge: test verdicts decided by each judge step (normalized match, then LLM judge)", "",
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


def plot(source: str, results: list[ArmResult], path: Path) -> Path:
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
    ax1.set_ylabel(f"{metric_name(source)} (%)")
    ax1.set_title(f"{source} test {metric_name(source)} (n={results[0].n if results else 0})")
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


def write_report(source: str, results: list[ArmResult], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    write_text_atomic(md, markdown_table(source, results))
    js = out_dir / "report.json"
    write_text_atomic(js, json.dumps([r.model_dump() for r in results], indent=1))
    return {"markdown": md, "json": js, "plot": plot(source, results, out_dir / "report.png")}
