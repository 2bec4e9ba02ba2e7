"""NQ reading comprehension: question + gold passage -> a one-sentence answer, judged by `qa`."""
from __future__ import annotations

import hashlib
from typing import Any

from tasks.core.errors import DataError
from tasks.core.records import Example
from tasks.data.prompts import chat
from tasks.data.sources import Source, register_source

NQ_PROMPT = "Answer the question using the passage. Reply in one sentence.\n\nPassage ({title}): {passage}\n\nQuestion: {question}?"
"""Passage, then question; a one-sentence answer the QA judge reads."""

NQ_SPLIT_SALT = "s3ft-nq-oracle-split-v1"
NQ_TEST_PERCENT = 20
"""The mirror's oracle file (2,655 rows, one file) is split by a salted hash of each question:
test = the rows whose sha256(salt + question) mod 100 is below 20 (~20%), train = the rest. It
depends on nothing but the question text, so it never changes with row order or sample sizes, and
no question is in both splits."""


def nq_split_of(question: str) -> str:
    h = int(hashlib.sha256(f"{NQ_SPLIT_SALT}:{question.strip().rstrip('?')}".encode()).hexdigest(), 16)
    return "test" if h % 100 < NQ_TEST_PERCENT else "train"


def _nq_select(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    return [r for r in rows if nq_split_of(r["question"]) == split]


def _nq_passage(row: dict[str, Any], example_id: str) -> tuple[str, str]:
    """(title, text) of the gold passage: the oracle file's `ctxs[0]` or a flat `title`/`text` row
    (the hub's florin-hf/nq_open_gold)."""
    ctxs = row.get("ctxs")
    if isinstance(ctxs, list) and ctxs:
        gold = next((c for c in ctxs if c.get("isgold")), ctxs[0])
        title, text = gold.get("title", ""), gold.get("text", "")
    else:
        title, text = row.get("title", ""), row.get("text", "")
    if not str(text).strip():
        raise DataError(f"{example_id}: no gold passage (expected `ctxs[0].text` or `text`). Fix: use the NQ "
                        f"oracle file (shared/data/nq/SOURCE.md) or a hub dataset with gold passages")
    return str(title).strip(), " ".join(str(text).split())


def nq_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    answers = [a.strip() for a in row["answers"] if isinstance(a, str) and a.strip()]
    if not answers:
        raise DataError(f"{example_id}: field `answers` holds no answer string. Fix: use the original NQ files")
    title, passage = _nq_passage(row, example_id)
    question = row["question"].strip().rstrip("?")
    prompt = NQ_PROMPT.format(title=title or "untitled", passage=passage, question=question)
    # Gold is NQ's first short answer: terse, in the annotators' style, not the model's.
    return Example(id=example_id, source="nq", prompt_messages=chat(system_prompt, prompt), gold=answers[0],
                   meta={"answers": answers, "question": question + "?"})


register_source(Source(
    name="nq", splits=("train", "test"), required_fields=("question", "answers"),
    mirror_file=lambda root, split: root / "nq" / "nq-open-oracle.jsonl.gz",
    hub=("florin-hf/nq_open_gold", None), to_example=nq_example, select=_nq_select))
