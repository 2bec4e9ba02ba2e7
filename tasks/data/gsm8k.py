"""GSM8K (grade-school math): question -> step-by-step solution ending in "#### N"; judged by `math`."""
from __future__ import annotations

import re
from typing import Any

from tasks.core.records import Example
from tasks.data.prompts import chat
from tasks.data.sources import Source, register_source

_CALC = re.compile(r"<<[^<>]*>>")


def gsm8k_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    from judges.math import gold_answer

    gold = _CALC.sub("", row["answer"]).strip()  # calculator annotations are not language
    return Example(id=example_id, source="gsm8k", prompt_messages=chat(system_prompt, row["question"].strip()),
                   gold=gold, meta={"final_answer": gold_answer(gold)})


register_source(Source(
    name="gsm8k",
    splits=("train", "test"),
    required_fields=("question", "answer"),
    mirror_file=lambda root, split: root / "gsm8k" / f"{split}.jsonl",
    hub=("openai/gsm8k", "main"),
    to_example=gsm8k_example,
))
