"""The comparison report: markdown tables, a PNG people look at (flows/report_plot.py), a JSON for machines.

Differences between arms are paired differences over the same items with 95 % bootstrap CIs
(flows/comparisons.py); accuracies and benchmark scores are in points (x100), drift in nats per token.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from flows.report_plot import plot
from flows.results import ArmResult, Comparison, Delta, benchmark_names, metric_name
from tasks.core.records import write_text_atomic


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _p(d: Delta | None) -> str:
    if d is None or d.p is None:
        return ""
    return "<0.001" if d.p < 0.001 else f"{d.p:.3f}"


def _drop(d: Delta | None) -> str:
    """A drop (base minus arm) in points with its CI: the negated difference."""
    return "" if d is None else Delta(estimate=-d.estimate, low=-d.high, high=-d.low, n=d.n).fmt()


def _score(general: dict[str, float], name: str) -> str:
    """`54.0 ± 5.0`; lm-eval gives no stderr for a group of one-item subsets (MMLU at one per subject)."""
    if f"{name}/acc" not in general:
        return ""
    stderr = general.get(f"{name}/acc_stderr", float("nan"))
    return f"{_pct(general[f'{name}/acc'])} ± {'n/a' if math.isnan(stderr) else _pct(stderr)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
            *("| " + " | ".join(r) + " |" for r in rows)]


def indomain_section(source: str, results: list[ArmResult]) -> list[str]:
    name = metric_name(source)
    rows = []
    for r in results:
        d = r.vs_base.get("indomain/accuracy")
        mix = [str(r.targets.get(k, "")) if r.targets else "" for k in ("self", "paraphrase", "gold")]
        n = f"{r.n} x {len(r.seeds)} seeds" if r.seeds else str(r.n)
        rows.append([r.arm, _pct(r.accuracy), _pct(r.stderr), d.fmt() if d else "", _p(d), n, *mix])
    lines = [f"### {source}: in-domain {name} and training-target mix", "",
             *_table(["arm", f"{name} %", "± stderr", "Δ vs base [95% CI]", "McNemar p", "n", "self", "paraphrase",
                      "gold"], rows)]
    if any(r.seeds for r in results):
        lines += ["", "Arms trained with several seeds show the mean over seeds and its stderr across seeds; the "
                  "paired Δ compares each item's mean over seeds."]
    return lines


def benchmark_section(results: list[ArmResult]) -> list[str]:
    names = benchmark_names(results[0].general) if results else []
    if not names:
        return []
    scores = [[r.arm] + [_score(r.general, n) for n in names] for r in results]
    drops = [[r.arm] + [_drop(r.vs_base.get(f"{n}/acc")) for n in names] + [_drop(r.vs_base.get("general/avg"))]
             for r in results if r.vs_base]
    return ["", "### General benchmarks (lm-eval): score % ± stderr", "", *_table(["arm", *names], scores),
            "", "Drop versus base in points (base minus arm, lower is better), paired over the same items, "
            "with 95% bootstrap CIs:", "", *_table(["arm", *[f"{n} drop" for n in names], "avg drop"], drops)]


def _kl(drift: dict[str, float]) -> str:
    if math.isnan(drift["kl"]):
        return "n/a"
    return f"{drift['kl']:.5f} [{drift['kl_ci_low']:.5f}, {drift['kl_ci_high']:.5f}]"


def drift_section(results: list[ArmResult]) -> list[str]:
    rows = [[r.arm, _kl(r.drift), f"{r.drift['logprob_delta']:+.4f}"] for r in results if r.drift]
    if not rows:
        return []
    return ["", "### Drift from base on general text (the base model's own replies; per token, nats)", "",
            *_table(["arm", "KL(base ‖ arm) [95% CI]", "log-prob change of the replies"], rows)]


def versus_sft_section(results: list[ArmResult]) -> list[str]:
    rows = []
    for r in results:
        if not r.vs_sft:
            continue
        d = r.vs_sft
        kl = d.get("drift/kl")
        rows.append([f"{r.arm} − sft", d["indomain/accuracy"].fmt(), _p(d["indomain/accuracy"]),
                     d["general/avg"].fmt() if "general/avg" in d else "", kl.fmt(1.0, 5) if kl else ""])
    if not rows:
        return []
    return ["", "### Against sft, paired over the same items (arm minus sft; 95% bootstrap CIs)", "",
            *_table(["arms", "in-domain Δ (points)", "McNemar p", "benchmarks Δ avg (points)", "drift KL Δ"], rows)]


def methods_section(results: list[ArmResult]) -> list[str]:
    """One row per trained arm, sorted by name: what it trained on and what that did (report.png's right panels
    plot the last three columns)."""
    rows = []
    for r in sorted((r for r in results if r.vs_base), key=lambda r: r.arm):
        mix = [str(r.targets.get(k, 0)) for k in ("self", "paraphrase", "gold", "dropped", "n")]
        rows.append([r.arm, *mix, r.vs_base["indomain/accuracy"].fmt(), _drop(r.vs_base.get("general/avg")),
                     _kl(r.drift) if r.drift else ""])
    if not rows:
        return []
    return ["", "### Methods: target mix and what training on it did (arms by name; 95% CIs, paired over the same "
            "items)", "", *_table(["arm", "self", "paraphrase", "gold", "dropped", "trained", "in-domain Δ vs base "
                                   "(points)", "avg benchmark drop (points)", "drift KL"], rows),
            "", "self / paraphrase / gold: training sequences by source; dropped: examples with no target; trained: "
            "sequences trained on."]


def per_seed_section(comps: list[Comparison]) -> list[str]:
    rows = [[c.arm, c.reference, str(c.seed), c.deltas["indomain/accuracy"].fmt(),
             c.deltas["general/avg"].fmt() if "general/avg" in c.deltas else "",
             c.deltas["drift/kl"].fmt(1.0, 5) if "drift/kl" in c.deltas else ""] for c in comps if c.seed is not None]
    if len({r[2] for r in rows}) < 2:
        return []
    return ["", "### Per training seed (arm minus reference, paired; 95% bootstrap CIs)", "",
            *_table(["arm", "vs", "seed", "in-domain Δ", "benchmarks Δ avg", "drift KL Δ"], rows)]


def judge_section(results: list[ArmResult]) -> list[str]:
    judged = [r for r in results if r.judged]
    if not judged:
        return []
    rows = [[r.arm] + [str(r.judged.get(k, 0)) for k in ("by_normalized", "by_llm", "by_precheck", "llm_unparseable")]
            for r in judged]
    return ["", "### Judge: test verdicts decided by each judge step (normalized match, then LLM judge)", "",
            *_table(["arm", "normalized", "llm", "precheck", "llm unparseable"], rows)]


def familiarity_section(results: list[ArmResult]) -> list[str]:
    familiar = [r for r in results if r.familiarity]
    if not familiar:
        return []
    rows = [[r.arm] + [f"{r.familiarity[s]:.3f}" if s in r.familiarity else "" for s in ("self", "paraphrase", "gold")]
            for r in familiar]
    return ["", "### Familiarity: mean per-token log-prob of the training targets under the base model "
            "(higher = closer to the model's own distribution)", "", *_table(["arm", "self", "paraphrase", "gold"], rows)]


def markdown_table(source: str, results: list[ArmResult], comps: list[Comparison] | None = None,
                   precision: str = "") -> str:
    sections = ([precision, ""] if precision else []) + (indomain_section(source, results) + benchmark_section(results) + drift_section(results)
                + versus_sft_section(results) + methods_section(results) + per_seed_section(comps or [])
                + judge_section(results) + familiarity_section(results))
    return "\n".join(sections) + "\n"


def write_report(source: str, results: list[ArmResult], out_dir: Path,
                 comps: list[Comparison] | None = None, precision: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "report.md"
    write_text_atomic(md, markdown_table(source, results, comps, precision))
    js = out_dir / "report.json"
    write_text_atomic(js, json.dumps({"arms": [r.model_dump() for r in results],
                                      "comparisons": [c.model_dump() for c in comps or []]}, indent=1))
    return {"markdown": md, "json": js, "plot": plot(source, results, out_dir / "report.png")}
