"""The shape of a target strategy and the registry of strategies by arm name (tasks/methods/strategies.py
registers them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tasks.core.method_settings import RftSettings
from tasks.core.records import TargetSource, Verdict
from tasks.core.registry import Registry
from tasks.methods.evidence import Evidence

Choice = list[tuple[str, TargetSource]]
SOURCES: tuple[TargetSource, ...] = ("self", "paraphrase", "gold")


@dataclass(frozen=True)
class Strategy:
    name: str
    choose: Callable[[Evidence, RftSettings], Choice]
    """The example's targets (text, source); empty = the example is dropped."""
    needs_generation: bool = False
    """Whether the base model's greedy answers are needed."""
    needs_samples: bool = False
    """Whether k sampled answers per question are needed (generation.samples)."""
    needs_familiarity: bool = False
    """Whether the correct answers' familiarity under the base model is needed."""
    paraphrase_when: Callable[[Evidence], bool] = lambda ev: False
    """Which examples get a paraphrase of their gold answer."""
    paraphrase_attempts: bool = False
    """Paraphrases are k sampled attempts (generation.samples) instead of one greedy paraphrase."""
    reads_settings: bool = False
    """Whether `choose` reads the `rft` settings (else they stay out of its targets' cache key)."""


STRATEGIES: Registry[Strategy] = Registry("arm")


def register_strategy(strategy: Strategy) -> Strategy:
    return STRATEGIES.add(strategy.name, strategy)


def strategy_names() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


def correct(v: Verdict | None) -> bool:
    """Only a `correct` verdict counts: a judge error is never taken as correct."""
    return v is not None and v.outcome == "correct"


def own_correct(ev: Evidence) -> bool:
    return correct(ev.own_verdict) and ev.own is not None


def gold(ev: Evidence) -> Choice:
    return [(ev.example.gold, "gold")]
