"""The settings of the judges for your own task (judges/matching.py), one section each under `judge:`;
kept apart from judge_settings.py so the judges can read their own defaults without importing the registry."""
from __future__ import annotations

from pydantic import Field, field_validator

from tasks.core.section import Section


class MatchSettings(Section):
    """`exact` and `contains`: how answers and gold answers are compared."""

    normalize: bool = True
    """SQuAD normalization on both sides (lower case, no punctuation, no articles, single spaces); false =
    whitespace collapsed only."""


class NumericSettings(Section):
    """`numeric`: the answer's number against the gold number."""

    pattern: str | None = None
    """A regular expression for the number in an answer (its last match; group 1 when it has one), e.g.
    'Total: (\\S+)'; null = "#### N", "answer is N", ... markers, else the last number in the answer."""
    tolerance: float = Field(default=0.0, ge=0)
    """Largest accepted absolute difference."""
    relative_tolerance: float = Field(default=0.0, ge=0)
    """Added to `tolerance` times |gold| (0.01 = within 1 %)."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        return _compiled(v)


class RegexSettings(Section):
    """`regex`: extract the answer with a pattern, then compare it with gold."""

    pattern: str = r"(?im)answer\s*(?:is)?\s*:?\s*(.+?)\s*$"
    """Its last match in the answer (group 1 when it has one) is the extracted answer."""
    normalize: bool = True
    """SQuAD normalization of the extracted and the gold answer before comparing."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        return _compiled(v)


class ChoiceSettings(Section):
    """`choice`: multiple choice; gold is a letter, or an option's text with `data.fields.options` mapped."""

    letters: str = Field(default="ABCDEFGHIJ", min_length=2)
    """The option letters, in order (upper case)."""


def _compiled(pattern: str | None) -> str | None:
    import re

    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err})") from None
    return pattern


PARAMETER_SECTIONS = {"exact": "match", "contains": "match", "numeric": "numeric", "regex": "regex",
                      "choice": "choice"}
"""Judge name -> the JudgeSettings section that tunes it."""
