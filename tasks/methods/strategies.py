"""Target strategies by name: which texts each training example learns (the method under test).

A strategy sees, per example, the evidence the flow gathered (tasks/methods/evidence.py): the base model's
greedy answer, its k sampled answers, paraphrases of the gold answer, each with its verdict, and the
familiarity of the correct answers. It returns the example's targets: usually one, several for rejection
sampling, none when the example is dropped. README "Arms" gives each strategy's sentence and reference.
"""
from __future__ import annotations

from collections import Counter

import tasks.methods.sampled  # noqa: F401  (registers rft and s3ft_k)
from tasks.core.method_settings import RftSettings
from tasks.core.records import Target
from tasks.methods.base import (SOURCES, Choice, Strategy, correct, get_strategy, gold, own_correct,  # noqa: F401
                                register_strategy, strategy_names)
from tasks.methods.evidence import Evidence

def _paraphrase_or_gold(ev: Evidence) -> Choice:
    if correct(ev.paraphrase_verdict) and ev.paraphrase is not None:
        return [(ev.paraphrase.text, "paraphrase")]
    return gold(ev)


def _s3ft(ev: Evidence, _: RftSettings) -> Choice:
    return [(ev.own.text, "self")] if own_correct(ev) else _paraphrase_or_gold(ev)


def _ssr(ev: Evidence, _: RftSettings) -> Choice:
    return [(ev.own.text, "self")] if own_correct(ev) else gold(ev)


register_strategy(Strategy(name="sft", choose=lambda ev, _: gold(ev)))
# S3FT (Gupta et al. 2025): the own answer when correct, else a correct paraphrase of gold, else gold.
register_strategy(Strategy(name="s3ft", choose=_s3ft, needs_generation=True,
                           paraphrase_when=lambda ev: not correct(ev.own_verdict)))
# SSR, Selective Self-Rehearsal (Gupta et al. 2024): the own answer when correct, else gold; no paraphrases
# (S3FT's "no paraphrase" ablation).
register_strategy(Strategy(name="ssr", choose=_ssr, needs_generation=True))
# SDFT (Yang et al. 2024): every gold answer is rewritten by the model, kept when the rewrite is judged
# correct, else gold. No own answers needed.
register_strategy(Strategy(name="sdft", choose=lambda ev, _: _paraphrase_or_gold(ev), paraphrase_when=lambda ev: True))


def build_targets(strategy: Strategy, evidence: list[Evidence], settings: RftSettings | None = None) -> list[Target]:
    """The targets of every example in order: the prompt plus each chosen assistant answer."""
    settings = settings or RftSettings()
    return [Target(example_id=ev.example.id, source=source,
                   messages=ev.example.prompt_messages + [{"role": "assistant", "content": text}])
            for ev in evidence for text, source in strategy.choose(ev, settings)]


def source_counts(targets: list[Target]) -> dict[str, int]:
    """How many targets came from each source: the mix S3FT is about."""
    counts = Counter(t.source for t in targets)
    return {k: counts.get(k, 0) for k in SOURCES}


def target_counts(targets: list[Target], examples: int) -> dict[str, int]:
    """The target mix, the examples with no target (`dropped`) and the sequences trained on (`n`)."""
    return {**source_counts(targets), "dropped": examples - len({t.example_id for t in targets}), "n": len(targets)}


def paraphrase_ids(arm: str, evidence: list[Evidence]) -> list[str]:
    """Examples whose gold answer this arm's strategy wants paraphrased (S3FT: the wrongly answered ones)."""
    wants = get_strategy(arm).paraphrase_when
    return sorted(ev.example.id for ev in evidence if wants(ev))

