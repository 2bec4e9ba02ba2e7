"""Data sources by name: read a split from the local mirror or the Hugging Face hub, as Examples.

A source is light: `datasets` is imported only when the hub is used.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tasks.records import Example, Message
from tasks.registry import Registry


class DataError(ValueError):
    """A dataset problem; the message names the file/field and the fix."""


@dataclass(frozen=True)
class Source:
    name: str
    splits: tuple[str, ...]
    required_fields: tuple[str, ...]
    mirror_file: Callable[[Path, str], Path]
    hub: tuple[str, str | None]  # (dataset id, config name)
    to_example: Callable[[dict[str, Any], str, str | None], Example]


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
    rows = []
    with path.open(encoding="utf-8") as fh:
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
    if mirror is not None:
        path = source.mirror_file(mirror, split)
        return read_mirror_rows(path), str(path)
    return read_hub_rows(source, split), f"hub:{source.hub[0]}/{source.hub[1]}:{split}"


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
