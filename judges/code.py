"""Code judge (MBPP, HumanEval): extract the program from the model's text and run the example's
unit tests against it in the sandbox (`judges/sandbox.py`). Correct = every assert passed."""
from __future__ import annotations

import ast
import re
import warnings

from judges.base import register_judge
from judges.sandbox import Limits, Outcome, run_many
from tasks.core.records import Example, Verdict

VERSION = "3"  # 2: verdict reasons no longer repeat the status; 3: CPU-time limit reported as a timeout

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def )")


def _parses(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old code are not our concern
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):
            return False
    return True


def _trim_to_parse(lines: list[str]) -> str:
    """Drop trailing lines (prose after the code) until what is left parses."""
    while lines:
        code = "\n".join(lines).rstrip()
        if _parses(code):
            return code
        lines = lines[:-1]
    return ""


def extract_code(text: str) -> str | None:
    """The program in a model's answer: fenced blocks (every parseable Python block, in order; an
    unterminated last block counts), else bare code from the first `def`/`import`/`class` line on,
    with trailing prose cut. None when there is no code."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    blocks = [b.strip("\n") for lang, b in blocks if lang in ("", "python", "py", "python3") and b.strip()]
    if blocks:
        good = [b for b in blocks if _parses(b)]
        if good:
            return "\n\n".join(good)
        trimmed = _trim_to_parse(blocks[0].splitlines())
        return trimmed or blocks[0]
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if _CODE_START.match(l)), None)
    if start is None:
        return None
    return _trim_to_parse(lines[start:]) or None


def program_for(example: Example, code: str) -> str:
    """The script the sandbox runs: the candidate code, the test setup, then every test."""
    setup = example.meta.get("test_setup") or ""
    tests = example.meta.get("tests")
    if not tests:
        raise ValueError(f"example {example.id} has no meta.tests: the code judge needs the unit tests")
    return "\n\n".join(p for p in (code, setup, *tests) if p) + "\n"


class CodeJudge:
    name = "code"
    version = VERSION

    def __init__(self, limits: Limits = Limits(), workers: int | None = None):
        self.limits = limits
        self.workers = workers

    def judge(self, example: Example, text: str) -> Verdict:
        return self.judge_many([(example, text)])[0]

    def judge_many(self, items: list[tuple[Example, str]]) -> list[Verdict]:
        """Judge many answers, their programs running in parallel (one sandbox each)."""
        codes = [extract_code(text) for _, text in items]
        runnable = [i for i, c in enumerate(codes) if c]
        outcomes: dict[int, Outcome] = dict(zip(runnable, run_many(
            [program_for(items[i][0], codes[i]) for i in runnable], self.limits, self.workers,
            progress=len(runnable) > 50)))
        verdicts = []
        for i, (example, _) in enumerate(items):
            if i not in outcomes:
                verdicts.append(Verdict(example_id=example.id, outcome="incorrect", extracted=None,
                                        reason="no code in answer", judge=self.name, judge_version=self.version))
                continue
            o = outcomes[i]
            verdicts.append(Verdict(example_id=example.id, outcome="correct" if o.passed else "incorrect",
                                    extracted=codes[i][:2000], reason="" if o.passed else f"{o.status}: {o.reason}",
                                    judge=self.name, judge_version=self.version))
        return verdicts


@register_judge("code")
def _make() -> CodeJudge:
    return CodeJudge()
