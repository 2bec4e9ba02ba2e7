"""Config sections for judging: the data source's judge, its LLM step, and the paraphrase prompt whose
answers are judged like any answer."""
from __future__ import annotations

from pydantic import Field, field_validator

from tasks.core.judge_params import (PARAMETER_SECTIONS, ChoiceSettings, MatchSettings,  # noqa: F401
                                     NumericSettings, RegexSettings)
from tasks.core.section import Section, one_of, runtime


# Asking to "end with the answer" made SmolLM2 answer only "The answer is: N"; asking to explain
# each step gave real restatements (8/12 correct on a GSM8K probe).
DEFAULT_PARAPHRASE_PROMPT = (
    "Question: {question}\n\nHere is a correct solution:\n{gold}\n\n"
    "Rewrite this solution in your own words. Explain each step of the calculation, "
    "then give the final answer in the form 'The answer is: <number>'."
)


def _template_with(v: str, fields: tuple[str, ...]) -> str:
    for field in fields:
        if field not in v:
            raise ValueError(f"the template must contain {field}")
    return v


class ParaphraseSettings(Section):
    prompt: str = DEFAULT_PARAPHRASE_PROMPT
    """Template with `{question}` and `{gold}`; the base model answers it for every wrong answer."""
    max_new_tokens: int = Field(default=256, gt=0)
    min_length_ratio: float = Field(default=0.3, ge=0, le=1)
    """A paraphrase with fewer words than this fraction of the gold answer's is rejected (judged
    incorrect, reason `too short`): a bare "The answer is: N" passes the judge but restates nothing."""

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, v: str) -> str:
        return _template_with(v, ("{question}", "{gold}"))


# Strict and short: the judge model's first word decides; a reply that is neither word is counted
# as unparseable, never guessed.
DEFAULT_LLM_JUDGE_PROMPT = (
    "You are grading a student's answer to a question. Decide only whether the student's answer states "
    "the same answer as one of the correct answers. Ignore wording, but a vague, partial, hedged "
    "(several different answers offered) or different answer is wrong.\n\n"
    "Question: {question}\n"
    "Correct answer(s): {answers}\n"
    "Student's answer: {candidate}\n\n"
    "Is the student's answer correct? Reply with exactly one word: yes or no."
)


class LlmJudgeSettings(Section):
    """Step 2 of a two-step judge (QA): an LLM decides the answers the normalized match did not accept."""

    enabled: bool = True
    """false = the normalized match alone decides (every answer without a gold alias is incorrect)."""
    model: str | None = None
    """The judge model (same forms as model.ref); null = the experiment's base model. It judges every
    arm's answers, so it is never the model being evaluated after training."""
    prompt: str = DEFAULT_LLM_JUDGE_PROMPT
    """Template with {question}, {answers} (the gold aliases) and {candidate} (the answer); asks for yes or
    no. For the `llm` judge, your rubric: {question}, {answer} and {gold} (the first gold answer)."""
    max_new_tokens: int = Field(default=12, gt=0)
    """Room for a one-word reply or a short "the answer is (not) correct"."""
    system_prompt: str | None = None

    @field_validator("prompt")
    @classmethod
    def _has_fields(cls, v: str) -> str:
        if "{answer}" in v:  # a rubric (`llm` judge)
            return _template_with(v, ("{question}", "{answer}", "{gold}"))
        return _template_with(v, ("{question}", "{answers}", "{candidate}"))


class JudgeSettings(Section):
    name: str = "math"
    """Judge by name (see `judges`): math, code, qa (the paper's tasks), or for your own task exact,
    contains, numeric, regex, choice (each tuned by its section below), llm (a rubric prompt in `llm`)."""
    max_error_fraction: float = Field(default=0.05, ge=0, le=1)
    """A judging stage fails when more verdicts than this are `error` (judge infrastructure)."""
    reject_truncated: bool = True
    """An answer cut off at max_new_tokens is incorrect (it never stated its final answer), even when
    its last number happens to match; it is never trained on as a self or paraphrase target."""
    allow_gold_failures: bool = runtime(False)
    """Your own data: `s3ft run` first judges every gold answer of the train split and stops when fewer than
    95 % pass (a wrong field, template or judge); true = run anyway. Runtime: it changes no output."""
    llm: LlmJudgeSettings = Field(default_factory=LlmJudgeSettings)
    """For judges with an LLM step (`qa`); ignored by the others."""
    match: MatchSettings = Field(default_factory=MatchSettings)
    numeric: NumericSettings = Field(default_factory=NumericSettings)
    regex: RegexSettings = Field(default_factory=RegexSettings)
    choice: ChoiceSettings = Field(default_factory=ChoiceSettings)

    def params(self) -> dict:
        """The chosen judge's own settings (its section above; {} for math, code, qa): in the judge's key."""
        section = PARAMETER_SECTIONS.get(self.name)
        return getattr(self, section).model_dump(mode="json") if section else {}

    @field_validator("name")
    @classmethod
    def _known_judge(cls, v: str) -> str:
        from judges import judge_names

        return one_of(v, judge_names(), "judge")
