"""General-domain chat prompts drawn from the general benchmarks' questions: the text drift is measured on.

Each benchmark gives its question (with the answer options of multiple-choice ones, never the answer) as
one user message. Rows come from the converted mirror copy (stage `benchmark_data`), or without a mirror
from the hub datasets lm-eval reads. A split the benchmark is not scored on is preferred where there is
one (MMLU dev, ARC train), so the prompts and the scored items do not overlap there.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from tasks.core.errors import BenchmarkDataError
from tasks.core.records import Example
from tasks.data.prompts import chat
from tasks.data.sources import hub_rows

Row = dict[str, Any]


def _options(texts: list[str], labels: list[str] | None = None) -> str:
    labels = labels or [chr(ord("A") + i) for i in range(len(texts))]
    return "\n".join(f"{label}. {text}" for label, text in zip(labels, texts))


def _mmlu(r: Row) -> str:
    return f"{r['question'].strip()}\n{_options(r['choices'])}"


def _arc(r: Row) -> str:
    return f"{r['question'].strip()}\n{_options(r['choices']['text'], r['choices']['label'])}"


def _openbookqa(r: Row) -> str:
    return f"{r['question_stem'].strip()}\n{_options(r['choices']['text'], r['choices']['label'])}"


# benchmark -> (file(s) in the converted copy, hub (path, config, split), prompt of a row)
SOURCES: dict[str, tuple[str, tuple[str, str | None, str], Callable[[Row], str]]] = {
    "mmlu": ("mmlu/*/dev.jsonl", ("cais/mmlu", "all", "dev"), _mmlu),
    "truthfulqa": ("truthful_qa/multiple_choice/validation.jsonl",
                   ("truthfulqa/truthful_qa", "multiple_choice", "validation"), lambda r: r["question"].strip()),
    "arc_easy": ("arc_easy/train.jsonl", ("allenai/ai2_arc", "ARC-Easy", "train"), _arc),
    "arc_challenge": ("arc_challenge/train.jsonl", ("allenai/ai2_arc", "ARC-Challenge", "train"), _arc),
    "hellaswag": ("hellaswag/validation.jsonl", ("Rowan/hellaswag", None, "validation"),
                  lambda r: f"Continue this text.\n\n{r['ctx'].strip()}"),
    "piqa": ("piqa/validation.jsonl", ("baber/piqa", None, "validation"),
             lambda r: f"How would you do this? {r['goal'].strip()}"),
    "winogrande": ("winogrande/validation.jsonl", ("allenai/winogrande", "winogrande_xl", "validation"),
                   lambda r: f"Fill in the blank (_): {r['sentence'].strip()}"),
    "boolq": ("boolq/validation.jsonl", ("aps/super_glue", "boolq", "validation"),
              lambda r: f"{r['passage'].strip()}\n\nQuestion: {r['question'].strip()}?"),
    "openbookqa": ("openbookqa/validation.jsonl", ("allenai/openbookqa", "main", "validation"), _openbookqa),
}


def benchmark_rows(name: str, data_dir: Path | None) -> list[Row]:
    """A benchmark's rows from the converted copy (file order), or from the hub without one."""
    pattern, (path, config, split), _ = SOURCES[name]
    if data_dir is None:
        return hub_rows(path, config, split)
    files = sorted(data_dir.glob(pattern))
    if not files:
        raise BenchmarkDataError(f"drift.benchmarks: {name} needs {data_dir / pattern}, which the data mirror "
                                 f"lacks. Fix: use a mirror that has it, or drop {name} from drift.benchmarks")
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def shares(total: int, names: list[str]) -> dict[str, int]:
    """`total` split as evenly as possible over `names`, the first ones taking the remainder."""
    base, extra = divmod(total, len(names))
    return {n: base + (i < extra) for i, n in enumerate(names)}


def general_prompts(names: list[str], total: int, seed: int, data_dir: Path | None) -> list[Example]:
    """`total` prompts in equal shares from `names`, each share a seeded sample of that benchmark's rows."""
    out = []
    for name, k in shares(total, names).items():
        rows = benchmark_rows(name, data_dir)
        picked = sorted(random.Random(f"{seed}:drift:{name}").sample(range(len(rows)), min(k, len(rows))))
        prompt = SOURCES[name][2]
        out += [Example(id=f"drift-{name}-{i}", source=f"drift:{name}", prompt_messages=chat(None, prompt(rows[i])),
                        gold="") for i in picked]
    return out
