"""GSM8K judge: the final number of the answer equals the gold final number."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from judges.base import register_judge
from tasks.core.records import Example, Verdict

VERSION = "1"

_NUM = r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\$?\s*\.\d+"
# Ordered by how explicit the marker is; the first marker found wins, and within a marker the
# last occurrence (models often restate the question's numbers before concluding).
_MARKERS = [
    re.compile(r"####\s*(" + _NUM + r")"),
    re.compile(r"\\boxed\{\s*(" + _NUM + r")"),
    re.compile(r"answer\s+is\s*:?\s*\**\s*(" + _NUM + r")", re.IGNORECASE),
    re.compile(r"final\s+answer\s*(?:is)?\s*:?\s*\**\s*(" + _NUM + r")", re.IGNORECASE),
    re.compile(r"answer\s*:\s*\**\s*(" + _NUM + r")", re.IGNORECASE),
]
_ANY_NUM = re.compile(_NUM)


def normalize_number(raw: str) -> str | None:
    """Canonical decimal string: commas, `$`, spaces and trailing zeros removed ("18.0" -> "18")."""
    s = raw.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def extract_answer(text: str) -> str | None:
    """The final numeric answer in free text, normalized, or None when there is no number."""
    for marker in _MARKERS:
        hits = marker.findall(text)
        if hits:
            return normalize_number(hits[-1])
    numbers = _ANY_NUM.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gold_answer(gold: str) -> str:
    """The gold final answer of a GSM8K solution (`#### n`)."""
    found = extract_answer(gold)
    if found is None:
        raise ValueError(f"gold answer has no final number: {gold[-80:]!r}")
    return found


class MathJudge:
    name = "math"
    version = VERSION

    def judge(self, example: Example, text: str) -> Verdict:
        expected = example.meta.get("final_answer") or gold_answer(example.gold)
        got = extract_answer(text)
        if got is None:
            return Verdict(example_id=example.id, outcome="incorrect", extracted=None,
                           reason="no number in answer", judge=self.name, judge_version=self.version)
        ok = got == expected
        return Verdict(example_id=example.id, outcome="correct" if ok else "incorrect", extracted=got,
                       reason="" if ok else f"expected {expected}", judge=self.name,
                       judge_version=self.version)


@register_judge("math")
def _make() -> MathJudge:
    return MathJudge()
