"""Target strategies by name: which text each training example learns (the method under test).

A strategy sees, per example, the base model's own answer and its verdict, and the paraphrase of
the gold answer with its verdict (when one was made), and picks the target text and its source.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

from tasks.core.records import Target, TargetSource, Verdict
from tasks.core.registry import Registry
from tasks.methods.evidence import Evidence


@dataclass(frozen=True)
class Strategy:
    name: str
    needs_generation: bool
    """Whether the base model's own answers are needed."""
    paraphrase_when: Callable[[Evidence], bool]
    """Which examples get a paraphrase of their gold answer."""
    choose: Callable[[Evidence], tuple[str, TargetSource]]


STRATEGIES: Registry[Strategy] = Registry("arm")


def register_strategy(strategy: Strategy) -> Strategy:
    return STRATEGIES.add(strategy.name, strategy)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


def _correct(v: Verdict | None) -> bool:
    return v is not None and v.outcome == "correct"


def _s3ft_choose(ev: Evidence) -> tuple[str, TargetSource]:
    if _correct(ev.own_verdict) and ev.own is not None:
        return ev.own.text, "self"
    if _correct(ev.paraphrase_verdict) and ev.paraphrase is not None:
        return ev.paraphrase.text, "paraphrase"
    return ev.example.gold, "gold"


def _own_is_wrong(ev: Evidence) -> bool:
    return not _correct(ev.own_verdict)


register_strategy(Strategy(name="sft", needs_generation=False, paraphrase_when=lambda ev: False,
                           choose=lambda ev: (ev.example.gold, "gold")))
register_strategy(Strategy(name="s3ft", needs_generation=True, paraphrase_when=_own_is_wrong,
                           choose=_s3ft_choose))


def _sdft_choose(ev: Evidence) -> tuple[str, TargetSource]:
    if _correct(ev.paraphrase_verdict) and ev.paraphrase is not None:
        return ev.paraphrase.text, "paraphrase"
    return ev.example.gold, "gold"


# SDFT (Yang et al. 2024), the paper's closest baseline: every gold answer is rewritten by the model,
# kept when the rewrite is judged correct, else the gold answer is the target. No own answers needed.
register_strategy(Strategy(name="sdft", needs_generation=False, paraphrase_when=lambda ev: True,
                           choose=_sdft_choose))


def build_targets(strategy: Strategy, evidence: list[Evidence]) -> list[Target]:
    """One target per example: the prompt plus the chosen assistant answer."""
    out = []
    for ev in evidence:
        text, source = strategy.choose(ev)
        out.append(Target(example_id=ev.example.id, source=source,
                          messages=ev.example.prompt_messages + [{"role": "assistant", "content": text}]))
    return out


def source_counts(targets: list[Target]) -> dict[str, int]:
    """How many targets came from each source: the mix S3FT is about."""
    counts = Counter(t.source for t in targets)
    return {k: counts.get(k, 0) for k in ("self", "paraphrase", "gold")}


def paraphrase_ids(arms: list[str], evidence: list[Evidence]) -> list[str]:
    """Examples that any of these arms' strategies wants paraphrased (S3FT: the wrongly answered ones)."""
    strategies = [get_strategy(a) for a in arms]
    return sorted(ev.example.id for ev in evidence if any(s.paraphrase_when(ev) for s in strategies))
