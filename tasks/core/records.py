"""Typed records that stages exchange as JSONL files (see DESIGN.md)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from tasks.core.errors import CacheError

Message = dict[str, str]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Example(Record):
    """One item of a data source: the chat prompt, the gold answer and source-specific extras."""

    id: str
    source: str
    """The data source it came from (`data.source`), e.g. `gsm8k`."""
    prompt_messages: list[Message]
    gold: str
    meta: dict[str, Any] = Field(default_factory=dict)


class Generation(Record):
    example_id: str
    model_ref: str
    text: str
    finish_reason: str | None = None
    n_tokens: int = 0


SAMPLE_MARK = "#s"
"""The k samples of example `q7` answer as `q7#s0` ... (one Generation, and one Verdict, each)."""


def sample_id(example_id: str, index: int) -> str:
    return f"{example_id}{SAMPLE_MARK}{index}"


def sampled_from(generation_id: str) -> str:
    """The example a sample's id answers (`q7#s2` -> `q7`); an ordinary id unchanged."""
    head, mark, tail = generation_id.rpartition(SAMPLE_MARK)
    return head if mark and tail.isdigit() else generation_id


Outcome = Literal["correct", "incorrect", "error"]


class Verdict(Record):
    example_id: str
    outcome: Outcome
    extracted: str | None = None
    reason: str = ""
    judge: str
    judge_version: str
    decided_by: str | None = None
    """Which stage of a multi-stage judge decided (QA: `normalized` or `llm`); None for one-stage judges."""


TargetSource = Literal["self", "paraphrase", "gold"]


class Target(Record):
    example_id: str
    messages: list[Message]
    source: TargetSource


class Scores(Record):
    model_ref: str
    split: str
    metrics: dict[str, float]
    n: int
    stderr: dict[str, float] = Field(default_factory=dict)


class Artifact(Record):
    """What every stage returns: where its output lies, its content hash and a few counts."""

    path: str
    sha256: str
    counts: dict[str, float] = Field(default_factory=dict)

    def exists(self) -> bool:
        return Path(self.path).exists()


R = TypeVar("R", bound=Record)


def write_lines_atomic(path: Path, lines: Iterable[str]) -> Path:
    """Write a text file atomically (temp file, fsync, rename): a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_lines_atomic(path, [text])


def write_jsonl(path: Path, records: Iterable[Record]) -> Path:
    """Write records atomically: a reader never sees a half-written file."""
    return write_lines_atomic(path, (rec.model_dump_json() + "\n" for rec in records))


def read_jsonl(path: Path, cls: type[R]) -> list[R]:
    """Read typed records; a malformed line raises an error naming the file and line."""
    out: list[R] = []
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(cls.model_validate_json(line))
            except ValueError as err:
                raise CacheError(
                    f"{path}:{lineno}: not a valid {cls.__name__} record ({err.__class__.__name__}: "
                    f"{str(err).splitlines()[0]}). Fix: delete the file so its stage recomputes it."
                ) from err
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: Path) -> str:
    """Hash of a file or of a folder's files (relative names and contents), order-independent."""
    root = Path(root)
    if root.is_file():
        return sha256_file(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def artifact_for(path: Path, **counts: float) -> Artifact:
    return Artifact(path=str(Path(path).resolve()), sha256=sha256_tree(path), counts=counts)
