"""Reading-comprehension judge (NQ): a correct answer can be phrased many ways, so two steps.

Step 1, `normalized`: SQuAD-style normalization (lower case, punctuation, articles a/an/the and
extra whitespace removed) of the answer and of every gold alias; the answer is correct when some
alias occurs in it as a whole-word span. Deterministic, free, and right for most short answers.

Step 2, `llm`: an answer that step 1 did not accept is shown to an LLM judge (question, gold
aliases, the answer) with a strict yes/no prompt, served by the pipeline's own generation backend
(stages `llm_judge_prompts`, `generate`, `llm_judge_merge`). Its reply is parsed here: `yes`/`no`
decide; anything else is recorded as `unparseable` (outcome `error`, never guessed either way) and
counted.

Every verdict says which step decided in `decided_by`.
"""
from __future__ import annotations

import re
import string
import unicodedata

from judges.base import register_judge
from tasks.core.records import Example, Verdict

VERSION = "2"  # 2: framed replies ("The answer is: no") are read as verdicts
NO_MATCH = "no gold alias in the answer"

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"‘", "’", "“", "”", "–", "—", "…"}



def normalize(text: str) -> str:
    """SQuAD's answer normalization (Rajpurkar et al. 2016): lower case, no punctuation, no articles,
    single spaces; Unicode compatibility-folded first so "Ｐａｒｉｓ" and "Paris" agree."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)  # deleted, as SQuAD does: "U.S.A." -> "usa"
    return " ".join(_ARTICLES.sub(" ", text).split())


def aliases(example: Example) -> list[str]:
    found = example.meta.get("answers") or [example.gold]
    return [a for a in found if isinstance(a, str) and normalize(a)]


def matched_alias(text: str, gold_aliases: list[str]) -> str | None:
    """The first gold alias that occurs in `text` as a whole-word span after normalization."""
    hay = f" {normalize(text)} "
    for alias in gold_aliases:
        if f" {normalize(alias)} " in hay:
            return alias
    return None


_FRAMED = re.compile(r"answer(?: to(?: this)? question)? is (yes|no)")  # on normalized text (no articles)
_STATED = re.compile(r"\b(?:is|was)\s+(not\s+)?(correct|right|incorrect|wrong)\b")


def parse_yes_no(reply: str) -> str | None:
    """`yes` or `no` from the judge model's reply, else None (unparseable).

    Its first word when that is yes/no (any case and punctuation); else a first sentence that is
    exactly "the answer (to this question) is yes/no", or that states "the student's answer is (not)
    correct/incorrect". Nothing else is read as a verdict ("The student's answer is: yes" describes
    the student, not the verdict: unparseable).
    """
    words = normalize(reply.replace("*", " ")).split()
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0]
    first_sentence = re.split(r"[.!?\n]", reply.strip(), maxsplit=1)[0].lower()
    framed = _FRAMED.fullmatch(normalize(first_sentence))
    if framed is not None:  # "The answer is: no", "The answer to this question is yes."
        return framed.group(1)
    stated = _STATED.search(first_sentence)
    if stated is None:
        return None
    positive = stated.group(2) in ("correct", "right")
    return "yes" if positive != bool(stated.group(1)) else "no"


class QAJudge:
    """Step 1 of the QA judge; `defers` picks the verdicts that step 2 should decide."""

    name = "qa"
    version = VERSION
    llm_step = True  # the flow runs step 2 (tasks/llm_judge_prompts.py) when judge.llm is enabled

    def judge(self, example: Example, text: str) -> Verdict:
        golds = aliases(example)
        if not golds:
            raise ValueError(f"example {example.id} has no gold answer aliases (meta.answers)")
        if not normalize(text):
            return Verdict(example_id=example.id, outcome="incorrect", reason="empty answer", judge=self.name,
                           judge_version=self.version, decided_by="normalized")
        hit = matched_alias(text, golds)
        if hit is not None:
            return Verdict(example_id=example.id, outcome="correct", extracted=hit, judge=self.name,
                           judge_version=self.version, decided_by="normalized")
        return Verdict(example_id=example.id, outcome="incorrect", reason=NO_MATCH, judge=self.name,
                       judge_version=self.version, decided_by="normalized")

    @staticmethod
    def defers(verdict: Verdict) -> bool:
        """Whether step 2 (the LLM judge) should decide this answer: step 1 found no alias in it."""
        return verdict.decided_by == "normalized" and verdict.reason == NO_MATCH


def llm_verdict(first: Verdict, reply: str) -> Verdict:
    """Step 2's decision on an answer step 1 did not accept, from the judge model's reply."""
    said = parse_yes_no(reply)
    common = dict(example_id=first.example_id, judge=first.judge, judge_version=first.judge_version,
                  decided_by="llm", extracted=reply.strip()[:80])
    if said == "yes":
        return Verdict(outcome="correct", reason="llm judge: yes", **common)
    if said == "no":
        return Verdict(outcome="incorrect", reason="llm judge: no", **common)
    return Verdict(outcome="error", reason=f"unparseable: llm judge replied neither yes nor no: {reply.strip()[:80]!r}",
                   **common)


@register_judge("qa")
def _make() -> QAJudge:
    return QAJudge()
