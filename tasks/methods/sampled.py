"""The strategies over k sampled answers per question: rejection sampling (rft) and S3FT over k samples (s3ft_k).

Samples come from one request with n=k at `generation.sample_temperature` (the `generate` stage with
`generation.samples` = k); each is judged like any answer.
"""
from __future__ import annotations

import re

from tasks.core.method_settings import RftSettings
from tasks.methods.evidence import Evidence
from tasks.methods.base import Choice, Strategy, correct, gold, own_correct, register_strategy

_CALCULATION = re.compile(r"<<([^<>]*)>>")  # GSM8K's calculator annotations: <<48/2=24>>
_TERM = r"[\d.,$()+\-*/×÷% ]*\d[\d.,$()+\-*/×÷% ]*"
_EQUATION = re.compile(rf"{_TERM}={_TERM}")


def _tidy(equation: str) -> str:
    return re.sub(r"[\s$,]", "", equation).replace("×", "*").replace("÷", "/").strip(".")


def equations(text: str) -> tuple[str, ...]:
    """The answer's sequence of equations: its calculator annotations where it has any, else every
    `expression = number` in it; spacing, `$` and thousands commas ignored."""
    found = _CALCULATION.findall(text) or _EQUATION.findall(text)
    return tuple(_tidy(e) for e in found if "=" in e)


def normalized(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def dedupe_key(text: str, dedupe: str) -> tuple[str, ...]:
    """What makes two correct samples the same answer (`rft.dedupe`; `auto` is decided before this)."""
    if dedupe == "equations" and (eqs := equations(text)):
        return ("equations", *eqs)
    return ("text", normalized(text))


def _rft(ev: Evidence, settings: RftSettings) -> Choice:
    """Every distinct correct sample, in sample order; none correct: dropped, or gold (`rft.fallback`)."""
    seen: set[tuple[str, ...]] = set()
    out: Choice = []
    for s in ev.samples:
        key = dedupe_key(s.answer.text, settings.dedupe)
        if correct(s.verdict) and key not in seen:
            seen.add(key)
            out.append((s.answer.text, "self"))
    if out or settings.fallback == "drop":
        return out
    return gold(ev)


def correct_answers(ev: Evidence) -> list[str]:
    """The example's correct own answers: the greedy one first, then the correct samples in order."""
    return ([ev.own.text] if own_correct(ev) else []) + [s.answer.text for s in ev.samples if correct(s.verdict)]


def most_familiar(ev: Evidence, texts: list[str]) -> str:
    """The answer the base model finds most familiar (highest mean token log-prob); the earlier one on a tie."""
    missing = [t for t in texts if t not in ev.familiarity]
    if len(texts) > 1 and missing:
        raise KeyError(f"example {ev.example.id!r}: no familiarity for {len(missing)} of its {len(texts)} correct "
                       "answers; the inputs do not belong together")
    return max(texts, key=lambda t: (ev.familiarity.get(t, 0.0), -texts.index(t)))


def _s3ft_k(ev: Evidence, _: RftSettings) -> Choice:
    """The most familiar correct answer; else the first correct of k paraphrase attempts; else gold."""
    if own := correct_answers(ev):
        return [(most_familiar(ev, own), "self")]
    for attempt in ev.attempts:
        if correct(attempt.verdict):
            return [(attempt.answer.text, "paraphrase")]
    return gold(ev)


# RFT, rejection-sampling fine-tuning (Yuan et al. 2023): k samples, train on the distinct correct ones.
register_strategy(Strategy(name="rft", choose=_rft, needs_samples=True, reads_settings=True))
# S3FT over k samples: the greedy answer and k samples are candidates; the base model's most familiar correct
# one wins; otherwise up to k paraphrase attempts, judged the same way; otherwise gold.
register_strategy(Strategy(name="s3ft_k", choose=_s3ft_k, needs_generation=True, needs_samples=True,
                           needs_familiarity=True, paraphrase_when=lambda ev: not correct_answers(ev),
                           paraphrase_attempts=True))
