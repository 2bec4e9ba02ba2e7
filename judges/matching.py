"""Judges for your own task, chosen and tuned in the config (`judge.name` and its section):

- `exact`: the normalized answer equals a normalized gold answer;
- `contains`: a normalized gold answer occurs in the normalized answer as whole words;
- `numeric`: the answer's number (a pattern's group, else the math judge's markers, else the last number)
  is within `tolerance` (+ `relative_tolerance` x |gold|) of the gold number;
- `regex`: `pattern` extracts the answer (its last match, group 1 when it has one), compared normalized;
- `choice`: a multiple-choice letter (or the text of one option) equal to the gold letter or option;
- `llm`: the judge model decides every answer by a rubric prompt (`judge.llm.prompt`).

Gold aliases are `meta.answers` when a data source gives several, else the gold answer. Normalization is
SQuAD's (judges.qa.normalize), switchable per judge. Each judge's settings: tasks/core/judge_params.py.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from judges.base import register_judge
from judges.math import extract_answer, normalize_number
from judges.qa import aliases, normalize
from tasks.core.judge_params import ChoiceSettings, MatchSettings, NumericSettings, RegexSettings
from tasks.core.records import Example, Verdict

VERSION = "1"


def _compare_form(text: str, normalized: bool) -> str:
    return normalize(text) if normalized else " ".join(text.split())


class _Judge:
    name = ""
    version = VERSION
    settings: type | None = None
    """Its config section (tasks/core/judge_settings.py): the defaults and types of its parameters."""

    def __init__(self, **params: Any):
        self.params = self.settings(**params).model_dump() if self.settings else params

    def verdict(self, example: Example, correct: bool, extracted: str | None, reason: str = "") -> Verdict:
        return Verdict(example_id=example.id, outcome="correct" if correct else "incorrect", extracted=extracted,
                       reason=reason, judge=self.name, judge_version=self.version)


class ExactJudge(_Judge):
    name = "exact"
    settings = MatchSettings

    def judge(self, example: Example, text: str) -> Verdict:
        norm = self.params["normalize"]
        answer = _compare_form(text, norm)
        hit = any(answer == _compare_form(g, norm) for g in aliases(example))
        return self.verdict(example, hit, answer[:80], "" if hit else "not equal to a gold answer")


class ContainsJudge(_Judge):
    name = "contains"
    settings = MatchSettings

    def judge(self, example: Example, text: str) -> Verdict:
        norm = self.params["normalize"]
        hay = f" {_compare_form(text, norm)} "
        hit = next((g for g in aliases(example) if f" {_compare_form(g, norm)} " in hay), None)
        return self.verdict(example, hit is not None, hit, "" if hit else "no gold answer in the answer")


def find_number(text: str, pattern: str | None) -> str | None:
    """The number an answer states: the last match of `pattern` (group 1 if any), else the math judge's."""
    if pattern:
        hits = list(re.finditer(pattern, text))
        if not hits:
            return None
        raw = hits[-1].group(1) if hits[-1].re.groups else hits[-1].group(0)
        return normalize_number(raw.strip()) or extract_answer(raw)
    return extract_answer(text)


class NumericJudge(_Judge):
    name = "numeric"
    settings = NumericSettings

    def judge(self, example: Example, text: str) -> Verdict:
        pattern = self.params["pattern"]
        got = find_number(text, pattern)
        if got is None:
            return self.verdict(example, False, None, "no number in the answer")
        tol, rel = Decimal(str(self.params["tolerance"])), Decimal(str(self.params["relative_tolerance"]))
        for gold in aliases(example):
            want = normalize_number(gold.strip()) or find_number(gold, pattern)
            if want is None:
                raise ValueError(f"example {example.id}: gold answer {gold[:60]!r} holds no number. Fix: map "
                                 f"data.fields.answer to the numeric column, or set judge.numeric.pattern")
            if abs(Decimal(got) - Decimal(want)) <= tol + rel * abs(Decimal(want)):
                return self.verdict(example, True, got)
        return self.verdict(example, False, got, "a different number")


class RegexJudge(_Judge):
    name = "regex"
    settings = RegexSettings

    def judge(self, example: Example, text: str) -> Verdict:
        norm = self.params["normalize"]
        hits = list(re.finditer(self.params["pattern"], text))
        if not hits:
            return self.verdict(example, False, None, "the pattern does not match the answer")
        raw = hits[-1].group(1) if hits[-1].re.groups else hits[-1].group(0)
        got = _compare_form(raw, norm)
        hit = any(got == _compare_form(g, norm) for g in aliases(example))
        return self.verdict(example, hit, got[:80], "" if hit else "extracted answer differs from gold")


_LETTER = r"(?<![A-Za-z])\(?([{letters}])\)?(?![A-Za-z])"
_BARE_LETTER = r"(?<![A-Za-z])\(?([{letters}])(?:\)|[.:](?!\w)|\s*$)"  # "(B)", "B.", "B:", a final "B"


def choice_letter(text: str, letters: str, options: list[str]) -> str | None:
    """The option an answer picks: "Answer: B", "(B)", "B." or a lone "B" (the first such letter after an
    `answer` marker, else the first in the text), else the one option whose text it contains."""
    marked = re.search(r"answer\s*(?:is)?\s*:?\s*" + _LETTER.format(letters=re.escape(letters)), text, re.IGNORECASE)
    found = marked or re.search(_BARE_LETTER.format(letters=re.escape(letters)), text.strip())
    if found:
        return found.group(1).upper()
    hay = f" {normalize(text)} "
    named = [letters[i] for i, o in enumerate(options[:len(letters)]) if normalize(o) and f" {normalize(o)} " in hay]
    return named[0] if len(named) == 1 else None


class ChoiceJudge(_Judge):
    name = "choice"
    settings = ChoiceSettings

    def judge(self, example: Example, text: str) -> Verdict:
        letters = self.params["letters"]
        options = [str(o) for o in example.meta.get("options") or []]
        gold = example.gold.strip()
        want = gold.upper() if len(gold) == 1 and gold.upper() in letters else None
        if want is None:  # gold given as the option's text
            named = [letters[i] for i, o in enumerate(options[:len(letters)]) if normalize(o) == normalize(gold)]
            if not named:
                raise ValueError(f"example {example.id}: gold {gold[:60]!r} is neither a letter of {letters!r} "
                                 f"nor one of the options. Fix: map data.fields.answer to the answer letter, or "
                                 f"data.fields.options to the options column")
            want = named[0]
        got = choice_letter(text, letters, options)
        if got is None:
            return self.verdict(example, False, None, "no option letter in the answer")
        return self.verdict(example, got == want, got, "" if got == want else f"chose {got}, gold {want}")


DEFERRED = "deferred to the llm judge"


class RubricJudge(_Judge):
    """`llm`: every answer is decided by the judge model (`judge.llm`: model, and a rubric prompt with
    {question}, {answer} and {gold}), its reply read strictly as yes or no (judges.qa.parse_yes_no)."""

    name = "llm"
    llm_step = True

    def judge(self, example: Example, text: str) -> Verdict:
        return Verdict(example_id=example.id, outcome="incorrect", reason=DEFERRED, judge=self.name,
                       judge_version=self.version, decided_by="normalized")

    @staticmethod
    def defers(verdict: Verdict) -> bool:
        return verdict.reason == DEFERRED


for _cls in (ExactJudge, ContainsJudge, NumericJudge, RegexJudge, ChoiceJudge, RubricJudge):
    register_judge(_cls.name)(_cls)
