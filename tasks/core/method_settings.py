"""Settings of the target strategies that have knobs of their own (tasks/methods/strategies.py)."""
from __future__ import annotations

from typing import Literal

from tasks.core.section import Section


class RftSettings(Section):
    """Rejection-sampling fine-tuning (arm `rft`): train on the distinct correct ones of the k samples."""

    fallback: Literal["drop", "gold"] = "drop"
    """A question none of whose samples is correct: `drop` it (Yuan et al. 2023), or train on its `gold` answer."""
    dedupe: Literal["auto", "text", "equations"] = "auto"
    """When two correct samples are the same answer: `text` = equal after lower-casing and dropping punctuation
    and spacing; `equations` = the same sequence of equations where the answer has any, else `text`;
    `auto` = `equations` for math judges, `text` otherwise (decided by the flow from `judge.name`)."""

    def for_judge(self, judge_name: str) -> "RftSettings":
        """`dedupe: auto` decided for the experiment's judge."""
        if self.dedupe != "auto":
            return self
        return self.model_copy(update={"dedupe": "equations" if judge_name == "math" else "text"})
