"""report.png: what each arm scored, what it trained on, and the trade-off between in-domain gain and
forgetting (average benchmark drop and drift from base), each with its paired 95 % CI."""
from __future__ import annotations

import math
from pathlib import Path

from flows.results import ArmResult, Delta, benchmark_names, metric_name

ARM_COLORS = {"base": "#888888", "sft": "#1f77b4", "sdft": "#9467bd", "s3ft": "#2ca02c"}


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _color(arm: str) -> str:
    return ARM_COLORS.get(arm, "#17becf")


def _accuracy(ax, source: str, results: list[ArmResult]) -> None:
    arms = [r.arm for r in results]
    ax.bar(arms, [100 * r.accuracy for r in results], yerr=[_finite(100 * r.stderr) for r in results],
           capsize=6, color=[_color(a) for a in arms])
    for i, r in enumerate(results):
        ax.text(i, 100 * r.accuracy + _finite(100 * r.stderr) + 0.5, f"{100 * r.accuracy:.1f}", ha="center")
    tops = [100 * r.accuracy + _finite(100 * r.stderr) for r in results] or [1.0]
    ax.set_ylim(0, max(max(tops) * 1.25, 1.0))  # room for the value labels under the title
    ax.set_ylabel(f"{metric_name(source)} (%)")
    ax.set_title(f"{source} test {metric_name(source)} (n={results[0].n if results else 0})")


def _targets(ax, results: list[ArmResult]) -> None:
    trained = [r for r in results if r.targets]
    bottom = [0.0] * len(trained)
    for source, color in (("self", "#2ca02c"), ("paraphrase", "#ff7f0e"), ("gold", "#d62728")):
        totals = [max(1, sum(r.targets.get(s, 0) for s in ("self", "paraphrase", "gold"))) for r in trained]
        values = [100 * r.targets.get(source, 0) / t for r, t in zip(trained, totals)]
        ax.bar([r.arm for r in trained], values, bottom=bottom, label=source, color=color)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("% of training targets")
    ax.set_title("target source")
    ax.legend(loc="upper right", fontsize=8)


def _benchmarks(ax, results: list[ArmResult]) -> None:
    names = benchmark_names(results[0].general)
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [100 * r.general.get(f"{n}/acc", 0) for n in names], width,
               yerr=[_finite(100 * r.general.get(f"{n}/acc_stderr", 0.0)) for n in names], capsize=2,
               label=r.arm, color=_color(r.arm))
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_title("general benchmarks (lm-eval)")
    ax.legend(fontsize=8)


def _point(ax, arm: str, x: Delta, y: Delta, y_scale: float, y_sign: float) -> None:
    """One arm at (in-domain Δ, y) with both CIs as error bars; y_sign -1 turns a difference into a drop."""
    ys = sorted((y_sign * y.low * y_scale, y_sign * y.high * y_scale))
    yv = y_sign * y.estimate * y_scale
    ax.errorbar([100 * x.estimate], [yv], xerr=[[100 * (x.estimate - x.low)], [100 * (x.high - x.estimate)]],
                yerr=[[yv - ys[0]], [ys[1] - yv]], fmt="o", capsize=4, color=_color(arm), label=arm)


def _tradeoff(ax, results: list[ArmResult], key: str, ylabel: str, y_scale: float, y_sign: float) -> None:
    for r in results:
        if "indomain/accuracy" in r.vs_base and key in r.vs_base:
            _point(ax, r.arm, r.vs_base["indomain/accuracy"], r.vs_base[key], y_scale, y_sign)
    ax.axvline(0, color="#bbbbbb", lw=0.8)
    ax.axhline(0, color="#bbbbbb", lw=0.8)
    ax.set_xlabel("in-domain change vs base (points)")
    ax.set_ylabel(ylabel)
    ax.set_title("trade-off: " + ylabel.split(" (")[0] + " (95% CI)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _drops(ax, results: list[ArmResult]) -> None:
    """Each trained arm's drop per benchmark (base minus arm, points) with its paired CI."""
    trained = [r for r in results if r.vs_base]
    names = benchmark_names(results[0].general)
    width = 0.8 / max(1, len(trained))
    for i, r in enumerate(trained):
        deltas = [r.vs_base.get(f"{n}/acc") for n in names]
        drops = [-100 * d.estimate if d else 0.0 for d in deltas]
        err = [[100 * (d.high - d.estimate) if d else 0.0 for d in deltas],
               [100 * (d.estimate - d.low) if d else 0.0 for d in deltas]]
        xs = [j + (i - (len(trained) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, drops, width, yerr=err, capsize=2, label=r.arm, color=_color(r.arm))
    ax.axhline(0, color="#888888", lw=0.8)
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("drop vs base (points)")
    ax.set_title("benchmark drops (paired 95% CI; lower is better)")
    if trained:
        ax.legend(fontsize=8)


def plot(source: str, results: list[ArmResult], path: Path) -> Path:
    """Top: accuracy, target mix, benchmark scores. Bottom: each trained arm's in-domain change against its
    average benchmark drop and against its drift from base, with paired CIs on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    _accuracy(axes[0][0], source, results)
    _targets(axes[0][1], results)
    if results and benchmark_names(results[0].general):
        _benchmarks(axes[0][2], results)
    else:
        axes[0][2].axis("off")
    _tradeoff(axes[1][0], results, "general/avg", "average benchmark drop (points)", 100.0, -1.0)
    _tradeoff(axes[1][1], results, "drift/kl", "drift KL(base ‖ arm) (nats/token)", 1.0, 1.0)
    if results and benchmark_names(results[0].general):
        _drops(axes[1][2], results)
    else:
        axes[1][2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
